package vsphere

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/addrpool"
)

// ExtraConfig keys kiln sets on every VM it clones.
const (
	// KeyIgnitionData holds the machine's Ignition config, base64-encoded, for Ignition's vmware
	// provider to read through the guest's RPC channel. ClearIgnition removes it.
	KeyIgnitionData = "guestinfo.ignition.config.data"
	// KeyIgnitionEncoding is "base64".
	KeyIgnitionEncoding = "guestinfo.ignition.config.data.encoding"

	// The labels List tells machines apart by. They are not under "guestinfo.", which the guest
	// can write: a compromised node cannot move itself into another cluster.
	KeyCluster = "kiln.cluster"
	KeyName    = "kiln.name"
	KeyRole    = "kiln.role"
	KeyPool    = "kiln.pool"
	KeyImage   = "kiln.image"
)

// MaxIgnitionSize is the most base64 bytes of Ignition kiln puts into guestinfo (the size
// bootstrap/lint allows for the vsphere target).
const MaxIgnitionSize = 64 << 10

// maxNameLen is the longest VM name vCenter takes.
const maxNameLen = 80

var labelKeys = []string{KeyCluster, KeyName, KeyRole, KeyPool, KeyImage}

// vmProps are the properties one VM's Machine is made of: the same for List and for a single VM.
var vmProps = append([]string{
	"name",
	"config.template",
	"config.createDate",
	"runtime.powerState",
	"runtime.connectionState",
	"guest.ipAddress",
}, extraConfigPaths(labelKeys)...)

func extraConfigPaths(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = extraConfigPath(k)
	}
	return out
}

// extraConfigPath is the property path of one ExtraConfig key, so that a retrieval carries the
// labels and never the (large) Ignition data.
func extraConfigPath(key string) string { return `config.extraConfig["` + key + `"]` }

// Provider places kiln machines on vSphere by cloning templates. It is safe for concurrent use. Make
// one with New; Close logs its session out.
type Provider struct {
	client  *vim25.Client
	session *session.Manager
	finder  *find.Finder
	search  *object.SearchIndex

	folder    *object.Folder
	pool      types.ManagedObjectReference
	datastore types.ManagedObjectReference
	backing   types.BaseVirtualDeviceBackingInfo
	linked    bool
	retry     Retry
	addrs     *addrpool.Pool
	// configServer is where kiln serves the machines' configs (ConfigServer); empty when it does not.
	configServer string

	mu        sync.Mutex
	templates map[string]*template
}

var (
	_ provisioner.Provider  = (*Provider)(nil)
	_ provisioner.Stopper   = (*Provider)(nil)
	_ provisioner.Addresser = (*Provider)(nil)
)

// template is a resolved template and what every clone of it changes.
type template struct {
	vm *object.VirtualMachine
	// nic is the template's first NIC, which each clone has on the cluster's port group with a MAC
	// of its own (nics); nil when the template has none, and each clone gets a vmxnet3 NIC.
	nic types.BaseVirtualDevice
	// remove removes the template's other NICs.
	remove []types.BaseVirtualDeviceConfigSpec
	// snapshot to clone from, for linked clones.
	snapshot *types.ManagedObjectReference
}

// New logs in to vCenter (or ESX) and resolves the datacenter, folder, resource pool, datastore and
// port group of cfg; an inventory object that does not exist is an error naming the config field.
// Machines get their addresses on the port group from addrs.
func New(ctx context.Context, cfg Config, addrs Addresses) (*Provider, error) {
	u, err := cfg.serverURL()
	if err != nil {
		return nil, err
	}
	pool, err := addrs.pool()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("vsphere: connect to %s: %w", u.Host, err)
	}
	sc := soap.NewClient(u, cfg.Insecure)
	if cfg.Thumbprint != "" {
		tp, _ := NormalizeThumbprint(cfg.Thumbprint) // checked by serverURL
		sc.SetThumbprint(u.Host, tp)
	}
	if cfg.CAFile != "" {
		if err := sc.SetRootCAs(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("vsphere: caFile %q: %w", cfg.CAFile, err)
		}
	}
	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vsphere: connect to %s: %w", u.Host, describe(err))
	}
	// The session manager talks to vCenter directly; every other call goes through relogin, which
	// logs in again through the session manager when the session is gone.
	sm := session.NewManager(&vim25.Client{Client: sc, ServiceContent: c.ServiceContent, RoundTripper: sc})
	user := url.UserPassword(cfg.Username, cfg.Password)
	if err := sm.Login(ctx, user); err != nil {
		return nil, fmt.Errorf("vsphere: log in to %s as %q: %w", u.Host, cfg.Username, describe(err))
	}
	c.RoundTripper = &relogin{rt: sc, login: func(ctx context.Context) error { return sm.Login(ctx, user) }}
	p := &Provider{
		client:    c,
		session:   sm,
		finder:    find.NewFinder(c, false),
		search:    object.NewSearchIndex(c),
		linked:    cfg.LinkedClone,
		retry:     cfg.Retry.withDefaults(),
		addrs:     pool,
		templates: map[string]*template{},

		configServer: cfg.ConfigServer,
	}
	if err := p.resolve(ctx, cfg); err != nil {
		_ = sm.Logout(context.WithoutCancel(ctx)) // the resolve error is the one to report
		return nil, err
	}
	return p, nil
}

// Close logs the provider's session out. A session vCenter has already forgotten is not an error.
func (p *Provider) Close(ctx context.Context) error {
	if err := p.session.Logout(ctx); err != nil && !fault.Is(err, &types.NotAuthenticated{}) {
		return fmt.Errorf("vsphere: log out: %w", describe(err))
	}
	return nil
}

func (p *Provider) resolve(ctx context.Context, cfg Config) error {
	dc, err := p.finder.Datacenter(ctx, cfg.Datacenter)
	if err != nil {
		return lookupError("datacenter", cfg.Datacenter, err)
	}
	p.finder.SetDatacenter(dc)

	if cfg.Folder != "" {
		if p.folder, err = p.finder.Folder(ctx, cfg.Folder); err != nil {
			return lookupError("folder", cfg.Folder, err)
		}
	} else {
		folders, err := dc.Folders(ctx)
		if err != nil {
			return fmt.Errorf("vsphere: datacenter %q: folders: %w", cfg.Datacenter, describe(err))
		}
		p.folder = folders.VmFolder
	}

	var pool *object.ResourcePool
	switch {
	case cfg.ResourcePool != "":
		if pool, err = p.finder.ResourcePool(ctx, cfg.ResourcePool); err != nil {
			return lookupError("resourcePool", cfg.ResourcePool, err)
		}
	case cfg.Cluster != "":
		cl, err := p.finder.ClusterComputeResource(ctx, cfg.Cluster)
		if err != nil {
			return lookupError("cluster", cfg.Cluster, err)
		}
		if pool, err = cl.ResourcePool(ctx); err != nil {
			return fmt.Errorf("vsphere: cluster %q: resource pool: %w", cfg.Cluster, describe(err))
		}
	default:
		if pool, err = p.finder.DefaultResourcePool(ctx); err != nil {
			return fmt.Errorf("vsphere: cluster, resourcePool: neither is set and the datacenter has no single default pool (%w): %w",
				describe(err), ErrInvalidConfig)
		}
	}
	p.pool = pool.Reference()

	ds, err := p.finder.Datastore(ctx, cfg.Datastore)
	if err != nil {
		return lookupError("datastore", cfg.Datastore, err)
	}
	p.datastore = ds.Reference()

	net, err := p.finder.Network(ctx, cfg.Network)
	if err != nil {
		return lookupError("network", cfg.Network, err)
	}
	if p.backing, err = net.EthernetCardBackingInfo(ctx); err != nil {
		return fmt.Errorf("vsphere: network %q: %w", cfg.Network, describe(err))
	}
	return nil
}

// lookupError says which config field names an inventory object that is missing or ambiguous.
func lookupError(field, value string, err error) error {
	var nf *find.NotFoundError
	var mf *find.MultipleFoundError
	switch {
	case errors.As(err, &nf):
		return fmt.Errorf("vsphere: %s %q: %w", field, value, ErrNotFound)
	case errors.As(err, &mf):
		return fmt.Errorf("vsphere: %s %q: matches more than one object, give its inventory path: %w", field, value, ErrInvalidConfig)
	}
	return fmt.Errorf("vsphere: %s %q: %w", field, value, describe(err))
}

// Create clones spec.Image into the configured folder as spec.Name, with the Ignition config and
// kiln's labels in ExtraConfig and its NIC on the configured port group, powered on by the clone task
// itself (one task, so that no crash leaves a new machine off). A VM of
// that name already in the folder is returned (and powered on if it is off) when it is this
// cluster's; a clone that loses a race to another creator returns the winner's VM.
func (p *Provider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := checkSpec(spec); err != nil {
		return provisioner.Machine{}, err
	}
	if err := ctx.Err(); err != nil {
		return provisioner.Machine{}, fmt.Errorf("vsphere: create %q: %w", spec.Name, err)
	}
	vm, err := p.lookup(ctx, spec.Name)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("vsphere: create %q: %w", spec.Name, err)
	}
	if vm == nil {
		if vm, err = p.clone(ctx, spec); err != nil {
			return provisioner.Machine{}, err
		}
	}
	if err := vm.ownedBy(spec.Cluster); err != nil {
		return provisioner.Machine{}, fmt.Errorf("vsphere: create %q: %w", spec.Name, err)
	}
	if vm.power == types.VirtualMachinePowerStatePoweredOff {
		if err := p.powerOn(ctx, vm.ref); err != nil {
			return provisioner.Machine{}, fmt.Errorf("vsphere: power on %q: %w", spec.Name, err)
		}
		if vm, err = p.info(ctx, vm.ref); err != nil || vm == nil {
			return provisioner.Machine{}, fmt.Errorf("vsphere: create %q: %w", spec.Name, cmp.Or(err, error(ErrNotFound)))
		}
	}
	return vm.machine(), nil
}

func checkSpec(spec provisioner.MachineSpec) error {
	var errs []error
	bad := func(field, msg string) {
		errs = append(errs, fmt.Errorf("vsphere: create %q: %s: %s", spec.Name, field, msg))
	}
	switch {
	case spec.Name == "":
		bad("name", "is required")
	case len(spec.Name) > maxNameLen:
		bad("name", fmt.Sprintf("%d characters, vSphere allows %d", len(spec.Name), maxNameLen))
	case strings.ContainsAny(spec.Name, `/\%`):
		bad("name", `must not contain "/", "\" or "%"`)
	}
	if spec.Cluster == "" {
		bad("cluster", "is required")
	}
	if spec.Image == "" {
		bad("image", "is required (the template's name or inventory path)")
	}
	if len(spec.Ignition) == 0 {
		bad("ignition", "is empty")
	} else if n := base64.StdEncoding.EncodedLen(len(spec.Ignition)); n > MaxIgnitionSize {
		errs = append(errs, fmt.Errorf("vsphere: create %q: ignition: %d bytes base64, guestinfo takes %d: %w",
			spec.Name, n, MaxIgnitionSize, ErrIgnitionTooLarge))
	}
	return errors.Join(errs...)
}

// extraConfig is what a clone of spec carries in ExtraConfig: ignition, the config it boots with, and
// the labels.
func extraConfig(spec provisioner.MachineSpec, ignition []byte) []types.BaseOptionValue {
	opts := []types.BaseOptionValue{
		&types.OptionValue{Key: KeyIgnitionData, Value: base64.StdEncoding.EncodeToString(ignition)},
		&types.OptionValue{Key: KeyIgnitionEncoding, Value: "base64"},
	}
	for _, l := range []struct{ key, value string }{
		{KeyCluster, spec.Cluster},
		{KeyName, spec.Name},
		{KeyRole, spec.Role},
		{KeyPool, spec.Pool},
		{KeyImage, spec.Image},
	} {
		if l.value != "" { // an empty value would delete the key
			opts = append(opts, &types.OptionValue{Key: l.key, Value: l.value})
		}
	}
	return opts
}

func (p *Provider) clone(ctx context.Context, spec provisioner.MachineSpec) (*vmInfo, error) {
	t, err := p.template(ctx, spec.Image)
	if err != nil {
		return nil, fmt.Errorf("vsphere: clone %q: template %q: %w", spec.Name, spec.Image, err)
	}
	// The machine's address, reserved before its config was rendered (or now, for a caller that
	// did not), and the MAC its NIC gets, which the config's network file matches.
	addr, err := p.reserve(spec.Cluster, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("vsphere: clone %q: %w", spec.Name, err)
	}
	mac := macFor(addr)
	ign, err := p.machineConfig(spec, addr, mac)
	if err != nil {
		return nil, fmt.Errorf("vsphere: clone %q: %w", spec.Name, err)
	}
	nics, err := p.nics(t, mac)
	if err != nil {
		return nil, fmt.Errorf("vsphere: clone %q: %w", spec.Name, err)
	}
	cs := types.VirtualMachineCloneSpec{
		Location: types.VirtualMachineRelocateSpec{
			Pool:         &p.pool,
			Datastore:    &p.datastore,
			DeviceChange: nics,
		},
		Config: &types.VirtualMachineConfigSpec{ExtraConfig: extraConfig(spec, ign)},
		// Powered on by the clone task itself: a kiln killed between a clone and a separate power-on
		// would leave a stopped machine that the next pass judges failed (and, for a lone control
		// plane, may not replace below quorum). e2e/crashpoint kills kiln there.
		PowerOn: true,
	}
	if t.snapshot != nil {
		cs.Snapshot = t.snapshot
		cs.Location.DiskMoveType = string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking)
	}
	var ref types.ManagedObjectReference
	err = p.retryDo(ctx, func() error {
		task, err := t.vm.Clone(ctx, p.folder, spec.Name, cs)
		if err != nil {
			return err
		}
		res, err := task.WaitForResult(ctx)
		if err != nil {
			return err
		}
		r, ok := res.Result.(types.ManagedObjectReference)
		if !ok {
			return fmt.Errorf("clone task returned %T, not a VM", res.Result)
		}
		ref = r
		return nil
	})
	switch {
	case fault.Is(err, &types.DuplicateName{}):
		// Another creator (a goroutine, another controller) won the race: its VM is the machine.
		vm, lerr := p.lookup(ctx, spec.Name)
		if lerr != nil || vm == nil {
			return nil, fmt.Errorf("vsphere: clone %q: %w, yet no VM of that name is in the folder: %w", spec.Name, err, cmp.Or(lerr, error(ErrNotFound)))
		}
		return vm, nil
	case fault.Is(err, &types.InvalidPowerState{}):
		// The clone was made, but another creator saw it powered off and powered it on before the clone
		// task could: the machine is there and running, which is what this Create wanted.
		if vm, lerr := p.lookup(ctx, spec.Name); lerr == nil && vm != nil && vm.power == types.VirtualMachinePowerStatePoweredOn {
			return vm, nil
		}
	case fault.Is(err, &types.ManagedObjectNotFound{}):
		p.forget(spec.Image) // the template may have been replaced: resolve it again next time
	}
	if err != nil {
		return nil, fmt.Errorf("vsphere: clone %q: %w", spec.Name, err)
	}
	vm, err := p.info(ctx, ref)
	if err != nil || vm == nil {
		return nil, fmt.Errorf("vsphere: clone %q: reading the new VM: %w", spec.Name, cmp.Or(err, error(ErrNotFound)))
	}
	return vm, nil
}

// template resolves image (a template's name or inventory path) once and remembers it.
func (p *Provider) template(ctx context.Context, image string) (*template, error) {
	p.mu.Lock()
	t := p.templates[image]
	p.mu.Unlock()
	if t != nil {
		return t, nil
	}
	vm, err := p.finder.VirtualMachine(ctx, image)
	if err != nil {
		var nf *find.NotFoundError
		if errors.As(err, &nf) {
			return nil, ErrNotFound
		}
		return nil, describe(err)
	}
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"config.hardware.device", "snapshot"}, &m); err != nil {
		return nil, describe(err)
	}
	t = &template{vm: vm}
	var devices object.VirtualDeviceList
	if m.Config != nil {
		devices = object.VirtualDeviceList(m.Config.Hardware.Device)
	}
	for i, d := range devices.SelectByType((*types.VirtualEthernetCard)(nil)) {
		if i > 0 { // only the private port group: a second NIC could reach another network
			t.remove = append(t.remove, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: d})
			continue
		}
		t.nic = d
	}
	if p.linked {
		if m.Snapshot == nil || m.Snapshot.CurrentSnapshot == nil {
			return nil, ErrNoSnapshot
		}
		t.snapshot = m.Snapshot.CurrentSnapshot
	}
	p.mu.Lock()
	p.templates[image] = t
	p.mu.Unlock()
	return t, nil
}

// nics is the device change that gives a clone of t one NIC, on the cluster's port group with the
// static MAC mac (never the template's), and removes any other. The template's NIC is copied, never
// changed: clones of one template are made concurrently.
func (p *Provider) nics(t *template, mac string) ([]types.BaseVirtualDeviceConfigSpec, error) {
	op := types.VirtualDeviceConfigSpecOperationEdit
	var dev types.BaseVirtualDevice
	if t.nic == nil {
		nic, err := object.EthernetCardTypes().CreateEthernetCard("vmxnet3", p.backing)
		if err != nil {
			return nil, err
		}
		dev, op = nic, types.VirtualDeviceConfigSpecOperationAdd
	} else {
		v := reflect.New(reflect.TypeOf(t.nic).Elem())
		v.Elem().Set(reflect.ValueOf(t.nic).Elem())
		dev = v.Interface().(types.BaseVirtualDevice)
	}
	card := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
	card.Backing = p.backing
	card.AddressType = string(types.VirtualEthernetCardMacTypeManual)
	card.MacAddress = mac
	return append([]types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{Operation: op, Device: dev}}, t.remove...), nil
}

func (p *Provider) forget(image string) {
	p.mu.Lock()
	delete(p.templates, image)
	p.mu.Unlock()
}

// retryDo runs op until it succeeds, fails with a fault that is not transient, or has run
// p.retry.Attempts times, waiting a jittered exponential backoff between attempts. Its error says
// what vCenter said.
func (p *Provider) retryDo(ctx context.Context, op func() error) error {
	var last, final error
	attempt := 0
	err := p.retry.backoff().DelayFunc().Until(ctx, true, true, func(context.Context) (bool, error) {
		attempt++
		last = describe(op())
		switch {
		case last == nil:
			return true, nil
		case !transient(last):
			final = last
		case attempt >= p.retry.Attempts:
			final = fmt.Errorf("%w after %d attempts: %w", ErrRetriesExhausted, attempt, last)
		default:
			return false, nil
		}
		return false, final
	})
	if err != nil && final == nil {
		// The context ended while waiting to try again.
		return fmt.Errorf("%w while retrying after: %w", err, last)
	}
	return err
}

func (p *Provider) powerOn(ctx context.Context, ref types.ManagedObjectReference) error {
	vm := object.NewVirtualMachine(p.client, ref)
	err := p.retryDo(ctx, func() error {
		task, err := vm.PowerOn(ctx)
		if err != nil {
			return err
		}
		_, err = task.WaitForResult(ctx)
		return err
	})
	if fault.Is(err, &types.InvalidPowerState{}) {
		// Another creator powered it on first.
		if cur, ierr := p.info(ctx, ref); ierr == nil && cur != nil && cur.power == types.VirtualMachinePowerStatePoweredOn {
			return nil
		}
	}
	return err
}

// powerOff powers the VM off; one that is already off, or gone, is not an error.
func (p *Provider) powerOff(ctx context.Context, ref types.ManagedObjectReference) error {
	vm := object.NewVirtualMachine(p.client, ref)
	err := p.retryDo(ctx, func() error {
		task, err := vm.PowerOff(ctx)
		if err != nil {
			return err
		}
		_, err = task.WaitForResult(ctx)
		return err
	})
	if fault.IsAlreadyPoweredOffError(err) || fault.Is(err, &types.ManagedObjectNotFound{}) {
		return nil
	}
	return err
}

// Delete powers the machine off if it is on and destroys it with its disks, then releases its
// address. A machine that does not exist is not an error (an address reserved for it is released);
// a VM of that name without kiln labels is never touched.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vsphere: delete %q: %w", name, err)
	}
	vm, err := p.lookup(ctx, name)
	if err != nil {
		return fmt.Errorf("vsphere: delete %q: %w", name, err)
	}
	if vm == nil {
		if err := p.release("", name); err != nil {
			return fmt.Errorf("vsphere: delete %q: %w", name, err)
		}
		return nil
	}
	if !vm.kiln() {
		return fmt.Errorf("vsphere: delete %q: %w", name, ErrNotKiln)
	}
	if vm.power != types.VirtualMachinePowerStatePoweredOff {
		if err := p.powerOff(ctx, vm.ref); err != nil {
			return fmt.Errorf("vsphere: delete %q: power off: %w", name, err)
		}
	}
	obj := object.NewVirtualMachine(p.client, vm.ref)
	err = p.retryDo(ctx, func() error {
		task, err := obj.Destroy(ctx)
		if err != nil {
			return err
		}
		_, err = task.WaitForResult(ctx)
		return err
	})
	if err != nil && !fault.Is(err, &types.ManagedObjectNotFound{}) {
		return fmt.Errorf("vsphere: delete %q: destroy: %w", name, err)
	}
	// Only once the VM is gone: a machine that still runs keeps its address.
	if err := p.release(vm.labels[KeyCluster], name); err != nil {
		return fmt.Errorf("vsphere: delete %q: %w", name, err)
	}
	return nil
}

// Stop powers the machine off (a hard power-off) and keeps it and its disks. A machine that is off
// or does not exist is not an error.
func (p *Provider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vsphere: stop %q: %w", name, err)
	}
	vm, err := p.lookup(ctx, name)
	if err != nil {
		return fmt.Errorf("vsphere: stop %q: %w", name, err)
	}
	if vm == nil || vm.power == types.VirtualMachinePowerStatePoweredOff {
		return nil
	}
	if !vm.kiln() {
		return fmt.Errorf("vsphere: stop %q: %w", name, ErrNotKiln)
	}
	if err := p.powerOff(ctx, vm.ref); err != nil {
		return fmt.Errorf("vsphere: stop %q: %w", name, err)
	}
	return nil
}

// ClearIgnition removes the Ignition config from the machine's guestinfo, once its first boot is
// confirmed: the config holds a bootstrap token that nothing should read after it has been used.
func (p *Provider) ClearIgnition(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vsphere: clear ignition of %q: %w", name, err)
	}
	vm, err := p.lookup(ctx, name)
	switch {
	case err != nil:
		return fmt.Errorf("vsphere: clear ignition of %q: %w", name, err)
	case vm == nil:
		return fmt.Errorf("vsphere: clear ignition of %q: %w", name, ErrNotFound)
	case !vm.kiln():
		return fmt.Errorf("vsphere: clear ignition of %q: %w", name, ErrNotKiln)
	}
	obj := object.NewVirtualMachine(p.client, vm.ref)
	spec := types.VirtualMachineConfigSpec{ExtraConfig: []types.BaseOptionValue{
		// An empty value removes the key.
		&types.OptionValue{Key: KeyIgnitionData, Value: ""},
		&types.OptionValue{Key: KeyIgnitionEncoding, Value: ""},
	}}
	err = p.retryDo(ctx, func() error {
		task, err := obj.Reconfigure(ctx, spec)
		if err != nil {
			return err
		}
		_, err = task.WaitForResult(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("vsphere: clear ignition of %q: %w", name, err)
	}
	return nil
}

// List returns the cluster's machines: the VMs of the folder whose kiln.cluster label is cluster,
// read with one container view and one property retrieval whatever their number.
func (p *Provider) List(ctx context.Context, cluster string) (ms []provisioner.Machine, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("vsphere: list %q: %w", cluster, err)
	}
	v, err := view.NewManager(p.client).CreateContainerView(ctx, p.folder.Reference(), []string{"VirtualMachine"}, false)
	if err != nil {
		return nil, fmt.Errorf("vsphere: list %q: %w", cluster, describe(err))
	}
	defer func() {
		if derr := v.Destroy(context.WithoutCancel(ctx)); derr != nil && err == nil {
			ms, err = nil, fmt.Errorf("vsphere: list %q: destroy view: %w", cluster, describe(derr))
		}
	}()
	var content []types.ObjectContent
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, vmProps, &content); err != nil {
		return nil, fmt.Errorf("vsphere: list %q: %w", cluster, describe(err))
	}
	for _, oc := range content {
		vm := parseVM(oc)
		if !vm.kiln() || vm.labels[KeyCluster] != cluster {
			continue
		}
		ms = append(ms, vm.machine())
	}
	slices.SortFunc(ms, func(a, b provisioner.Machine) int { return cmp.Compare(a.Name, b.Name) })
	return ms, nil
}

// lookup finds the VM named name in the folder; nil if there is none.
func (p *Provider) lookup(ctx context.Context, name string) (*vmInfo, error) {
	ref, err := p.search.FindChild(ctx, p.folder, name)
	if err != nil {
		return nil, describe(err)
	}
	if ref == nil {
		return nil, nil
	}
	if ref.Reference().Type != "VirtualMachine" {
		return nil, fmt.Errorf("%s %s is not a VM: %w", ref.Reference().Type, ref.Reference().Value, ErrNotKiln)
	}
	return p.info(ctx, ref.Reference())
}

// info reads one VM; nil if it no longer exists.
func (p *Provider) info(ctx context.Context, ref types.ManagedObjectReference) (*vmInfo, error) {
	req := types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{{
		ObjectSet: []types.ObjectSpec{{Obj: ref}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: vmProps}},
	}}}
	res, err := property.DefaultCollector(p.client).RetrieveProperties(ctx, req)
	if fault.Is(err, &types.ManagedObjectNotFound{}) {
		return nil, nil
	}
	if err != nil {
		return nil, describe(err)
	}
	for _, oc := range res.Returnval {
		if oc.Obj == ref {
			vm := parseVM(oc)
			return &vm, nil
		}
	}
	return nil, nil
}

// Joined removes the machine's Ignition config from guestinfo (provisioner.Joiner): the executor calls
// it once the node answered, never because the VM is powered on.
func (p *Provider) Joined(ctx context.Context, name string) error { return p.ClearIgnition(ctx, name) }
