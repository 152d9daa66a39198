// Package bake holds the proof that kiln bakes what it promises: its test runs a real `packer build`
// (QEMU builder with TCG, kiln-harden) on the kiln Debian 12 base image through `kiln image build`,
// then boots the hardened image with a cluster's Ignition and checks it from the outside: key login,
// password and root refused, ssh-audit's policy, sshd -T and apt-config dump, host keys made per boot,
// nothing machine-specific left in the image file system. It has no non-test code.
package bake
