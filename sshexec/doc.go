// Package sshexec runs commands on a host over SSH (golang.org/x/crypto/ssh) for kiln's audits: key
// authentication only, the host's key checked against a known_hosts file (OpenSSH's format, hashed
// names included), and one timeout for the whole exchange, from the dial to the last command. An
// unknown, changed or revoked host key is an error naming the host and the file; it is never accepted
// silently (only Config.InsecureHostKey, set on the user's explicit request, accepts any key, and it
// is told each one).
//
// ProveHostKey is the other use: it asks a machine's SSH server to prove, in the key exchange, one of
// the machine's pinned host keys, and hangs up before any login. The executor's probe counts a
// machine as answering over SSH only so (provisioner/converge.TCPProber).
package sshexec
