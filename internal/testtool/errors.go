package testtool

import "errors"

// errNotExecutable says that a tool's path names no executable regular file.
var errNotExecutable = errors.New("not an executable file")

// errNotDir says that a data tool's path names no directory.
var errNotDir = errors.New("not a directory")

// errNotFile says that a data tool's path names no regular file.
var errNotFile = errors.New("not a regular file")
