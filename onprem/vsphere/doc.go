// Package vsphere is kiln's vSphere provider: it places a cluster's machines by cloning a template
// into a private port group, hands each its Ignition config through guestinfo, and lists, stops and
// deletes them, through vCenter's API (govmomi).
//
// # Usage
//
//	p, err := vsphere.New(ctx, vsphere.Config{
//		VSphereProvider: *spec.Provider.VSphere, // server, datacenter, cluster, folder, datastore, network
//		Username:        "kiln@vsphere.local",
//		Password:        os.Getenv("KILN_VSPHERE_PASSWORD"),
//		Thumbprint:      "AB:CD:...", // or CAFile; Insecure only for a lab
//	}, vsphere.Addresses{Store: st, Subnet: netip.MustParsePrefix("10.0.1.0/24"),
//		Endpoint: netip.MustParseAddr("10.0.1.5")}) // or vsphere.AddressesFor(spec, st)
//	defer p.Close(ctx)
//	m, err := p.Create(ctx, provisioner.MachineSpec{Cluster: "prod", Name: "prod-workers-0",
//		Role: "worker", Pool: "workers", Image: "kiln-debian-12", Ignition: ign})
//
// MachineSpec.Image is the template's name, or its inventory path where the name is ambiguous.
// Every machine lives in the configured folder (default: the datacenter's VM folder), which may be
// shared by several clusters and by VMs that are not kiln's: List tells them apart by kiln's labels,
// never by name. With LinkedClone the clone's disks are children of the template's current snapshot
// (fast, thin; the template must have one); otherwise they are full copies on the datastore.
//
// # What a VM carries
//
// Create clones with one ExtraConfig (the VM's .vmx options):
//
//   - guestinfo.ignition.config.data: the Ignition config, base64 (at most MaxIgnitionSize bytes), and
//     guestinfo.ignition.config.data.encoding = base64. Ignition's vmware provider reads both on first
//     boot through the VMware tools RPC channel. With Config.ConfigServer set (the spec's
//     provider.vsphere.configServer), the config the caller passes is a stub that fetches the real one
//     once from kiln's config server (see ConfigServer); otherwise it is the whole config. It holds a
//     bootstrap token, or the stub a one-time token: once the node has
//     answered (its Node is Ready, or its SSH server proved its pinned host key; never because the VM
//     is powered on), the executor calls Joined, whose ClearIgnition sets both keys to empty values,
//     which removes them.
//   - kiln.cluster, kiln.name, kiln.role, kiln.pool, kiln.image: the labels List reads (one property
//     path per key, so a List never downloads the Ignition data). They are deliberately not
//     guestinfo keys, which the guest itself may set, so a node cannot relabel itself.
//
// The template's first NIC is moved onto the configured port group and any other NIC is removed, so a
// machine is on the cluster's private network and nowhere else.
//
// # Addresses
//
// Every machine has a static address of Addresses.Subnet, reserved before its config is rendered
// (Reserve, provisioner.Addresser) and kept in kiln's state store (provisioner/addrpool) until Delete
// has destroyed the VM: the lowest free one, never the subnet's network address, its first host
// address (taken as the gateway), its broadcast address or the API endpoint. Create hands the VM
// MachineSpec.Ignition wrapped in an outer config (bootstrap/privatenet), gzip-compressed to fit
// guestinfo, that writes the systemd-networkd file setting the address and gateway on the NIC, and
// /etc/hosts. The file matches the NIC by its MAC, which the clone spec sets (a static MAC in
// VMware's manual range, 00:50:56:00:00:00 to 00:50:56:3F:FF:FF, from the address's last 22 bits).
// A Create that fails, or whose caller dies, leaves the reservation for the next attempt, which gets
// the same address. AddressesFor and New check the subnet and the endpoint and name the spec fields
// (spec.network.privateSubnets[0], spec.network.apiEndpoint.address); a full subnet is an error
// naming the machine, the subnet and its field, wrapping addrpool.ErrExhausted.
//
// # Behaviour
//
// Create is idempotent by name: a VM of that name in the folder that carries this cluster's label
// is returned (and powered on if it is off), one of another cluster or without kiln labels is an
// error (ErrNameTaken, ErrNotKiln); a clone that fails with DuplicateName lost a race to another
// creator, whose VM is returned. vCenter's own name uniqueness per folder makes concurrent creates
// of one name, from one process or several, end with one VM. Clone, power-on, power-off, destroy
// and reconfigure tasks that fail with a transient fault (SystemError, ResourceInUse,
// TaskInProgress, HostCommunication, Timedout, a dropped connection) are retried with exponential
// backoff and jitter (Config.Retry); any other fault is returned at once, as "<localized message>
// (<FaultType>)" wrapping govmomi's error, so fault.Is and fault.As from
// github.com/vmware/govmomi/fault still work. Every method takes a context and stops when it is
// cancelled, returning an error that wraps context.Canceled.
//
// List makes three round trips whatever the number of VMs: CreateContainerView on the folder, one
// RetrievePropertiesEx through the view, DestroyView (a vCenter that pages a very large result adds
// one ContinueRetrievePropertiesEx per page). States: poweredOn is running; poweredOff and
// suspended are stopped; orphaned, inaccessible and invalid VMs are in error; a VM on a host
// vCenter cannot reach keeps its last known power state. Created is config.createDate, Address is
// guest.ipAddress (reported by VMware tools). Delete powers the VM off if needed and destroys it
// with its disks; Stop powers it off and keeps it.
//
// # Permissions
//
// A role for kiln's user needs, on the folder (propagated to its VMs):
// VirtualMachine.Inventory.CreateFromExisting and .Delete, VirtualMachine.Interact.PowerOn and
// .PowerOff, VirtualMachine.Config.AdvancedConfig (ExtraConfig), VirtualMachine.Config.EditDevice
// and .AddRemoveDevice (the NIC); on the template: VirtualMachine.Provisioning.Clone (a VM) or
// .DeployTemplate (a template); on the cluster or resource pool: Resource.AssignVMToPool; on the
// datastore: Datastore.AllocateSpace; on the port group: Network.Assign; and System.View and
// System.Read, which every role has. The template's snapshot for linked clones is made when the
// template is built, not by kiln.
//
// # Sessions
//
// New logs in once; a session vCenter no longer knows (it expired while idle, vCenter restarted) is
// logged in again on the next call that fails with NotAuthenticated, once for all the calls that
// failed together, and the call is repeated. Close logs out.
//
// Standalone ESXi has no CloneVM_Task: kiln needs vCenter. Its tests run on govmomi's simulator,
// both as vCenter (simulator.VPX) and as ESX (simulator.ESX), with faults injected.
package vsphere
