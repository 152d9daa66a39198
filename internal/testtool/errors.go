package testtool

import "errors"

// errNotExecutable says that a tool's path names no executable regular file.
var errNotExecutable = errors.New("not an executable file")
