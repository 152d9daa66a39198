// Package hardening is the kiln-harden Packer provisioner: the thin executor of an images/harden Plan
// over Packer's communicator. It detects the distro from /etc/os-release, writes the plan's files and
// runs its commands (with sudo when the build user is not root), then reads the effective state with
// `sshd -T` and `apt-config dump`, verifies it against the profile and fails the build listing every
// drift. The plan's hygiene steps (host keys, authorized_keys, machine-id, logs, the build user) run
// after the verification, so that sshd -T still finds the build's host keys.
package hardening
