package ociimage

import "errors"

var (
	// ErrNotStatic says that a binary needs a dynamic loader, which a single-binary image lacks.
	ErrNotStatic = errors.New("not a static executable")
	// ErrUnknownArch says that a binary is for a machine this package has no OCI architecture for.
	ErrUnknownArch = errors.New("unknown architecture")
)
