// Package bake holds the proof that kiln bakes what it promises. TestBake takes the hardened image
// that `hack/tools.sh baked-image` bakes once (a real `packer build` with the QEMU builder under TCG
// and kiln-harden, through `kiln image build --target qemu` on the kiln Debian 12 base image) and
// that the other VM tests share, boots it with a cluster's Ignition and checks it from the outside:
// key login, password and root refused, ssh-audit's policy, sshd -T and apt-config dump, host keys
// made per boot, nothing machine-specific left in the image file system. BenchmarkBake bakes a fresh
// image each time and reports how long it took. It has no non-test code.
package bake
