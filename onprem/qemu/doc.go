// Package qemu is the local QEMU provider: every machine is a qemu-system-x86_64 process (TCG) that
// outlives kiln, booting a qcow2 overlay of the image with its Ignition config passed through fw_cfg.
//
// Each machine has two NICs. The first is QEMU user networking with restrict=on (the guest reaches
// nothing outside) and the guest's SSH forwarded to 127.0.0.1:PORT, a port the provider allocates from
// Config.SSHPortBase; a control-plane machine also forwards a port from Config.APIPortBase to the
// API endpoint's port, where haproxy listens (APIAddress). The second is on the cluster's private network: a vde_switch process per cluster,
// reached over unix sockets in the state directory, that connects the cluster's VMs to each other and
// to nothing else. The provider wraps the given Ignition config in an outer one that merges it and adds
// a systemd-networkd file giving the private NIC a static address from Config.PrivateCIDR, and
// /etc/hosts entries for the cluster's machines.
//
// A machine's private address can be reserved before the machine exists (Reserve), so that it can be
// rendered into the machine's config; Create then uses it.
//
// State lives in Config.StateDir: <cluster>/<machine>/ holds meta.json (cluster, role, pool, image,
// created, SSH and API ports, private address; or only a reserved address), config.ign, disk.qcow2 (the overlay), qemu.pid and serial.log;
// <cluster>/.switch/ is the private network's switch. List reads the live processes (the pidfile and
// /proc/<pid>/cmdline): a live VM is running, one stopped by Stop is stopped, and one that died
// otherwise (killed, crashed) is a failed machine (provisioner.StateError). See docs/qemu.md.
package qemu
