// Package harden is kiln's image hardening profile: what a baked image must look like (sshd settings and
// crypto, security-only unattended upgrades with reboots in a window, no baked host keys, machine-id,
// authorized_keys, logs or first-boot state), rendered into a Plan of files and commands per distro
// family, and verifiers that compare the effective state (`sshd -T`, `apt-config dump`) with the profile.
//
// Everything here is pure: Plan decides and returns data, the verifiers parse bytes they are given. The
// Packer provisioner (images/packer) is the thin executor that writes the files, runs the commands over
// the communicator, captures the command outputs and fails the build on any Drift.
package harden
