package buildaccess

import "errors"

// ErrHalfGiven says that one of the build_ignition and ssh_private_key_file template variables was
// given without the other: the build key and the build config are a pair.
var ErrHalfGiven = errors.New("given without its pair")
