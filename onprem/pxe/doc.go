// Package pxe is kiln's network boot server for bare metal: DHCP (a proxyDHCP next to an existing DHCP
// server, or a full DHCP server with leases from a range on an isolated provisioning network), TFTP for
// the iPXE binaries, and HTTP for the per-machine iPXE scripts, the machines' own Ignition configs and
// the boot assets (kernels, initrds).
//
// Which machine may boot, and with what, comes from the machine inventory (machines.yaml, kind
// MachineInventory): machines are matched against groups, which point to profiles (kernel, initrd, kernel
// arguments). Which machine may install now is an Arm in the state store, made by 'kiln pxe arm' or by
// the metal provider: an armed machine's script carries the URL of its config with the one-time token
// of an enrollment ticket (bootstrap/enroll), bound to the address the machine asked from (or was
// leased); the first fetch spends it and disarms the machine. Every other MAC, known or not, gets
// NoBootScript. Every boot step of every machine (DHCP answered, script served, kernel and initrd
// fetched, Ignition served) is recorded and kept in the state store. Service holds the server's state
// between the sockets and the store: the machines' configs, rendered ahead and again before their
// bootstrap token runs out, the arms, and the boot records.
//
// Decisions are pure functions apart from the sockets: Policy.Decide answers a DHCP request,
// Inventory.Match picks a machine's profile, and Script renders its iPXE script.
package pxe
