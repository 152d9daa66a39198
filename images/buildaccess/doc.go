// Package buildaccess makes the one-time access a QEMU bake logs in with: an ed25519 build key and
// the build-time Ignition config that creates the build user with the key's public half and
// passwordless sudo. `kiln image build --target qemu` writes both into its work directory (0600) when
// neither the build_ignition nor the ssh_private_key_file template variable is given, passes them to
// packer and removes them afterwards; kiln-harden removes the build user from the image itself.
package buildaccess
