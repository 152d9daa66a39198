package vsphere

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/provisioner"
)

// vmInfo is what kiln reads of one VM (vmProps).
type vmInfo struct {
	ref      types.ManagedObjectReference
	name     string
	template bool
	labels   map[string]string
	power    types.VirtualMachinePowerState
	conn     types.VirtualMachineConnectionState
	created  time.Time
	address  string
}

// parseVM reads the properties of vmProps out of a retrieval. Properties a VM lacks (a template has
// no guest address, an inaccessible VM no config) stay empty.
func parseVM(oc types.ObjectContent) vmInfo {
	vm := vmInfo{ref: oc.Obj, labels: map[string]string{}}
	for _, p := range oc.PropSet {
		switch p.Name {
		case "name":
			vm.name, _ = p.Val.(string)
		case "config.template":
			vm.template, _ = p.Val.(bool)
		case "config.createDate":
			switch t := p.Val.(type) {
			case time.Time:
				vm.created = t
			case *time.Time:
				if t != nil {
					vm.created = *t
				}
			}
		case "runtime.powerState":
			vm.power, _ = p.Val.(types.VirtualMachinePowerState)
		case "runtime.connectionState":
			vm.conn, _ = p.Val.(types.VirtualMachineConnectionState)
		case "guest.ipAddress":
			vm.address, _ = p.Val.(string)
		default:
			if key, ok := extraConfigKey(p.Name); ok {
				if v := optionString(p.Val); v != "" {
					vm.labels[key] = v
				}
			}
		}
	}
	return vm
}

// extraConfigKey is the key of a path made by extraConfigPath.
func extraConfigKey(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, `config.extraConfig["`)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, `"]`)
}

// optionString is the string value of a keyed ExtraConfig property, which vCenter returns as the
// OptionValue itself.
func optionString(v types.AnyType) string {
	var ov *types.OptionValue
	switch o := v.(type) {
	case types.OptionValue:
		ov = &o
	case types.BaseOptionValue:
		ov = o.GetOptionValue()
	case string:
		return o
	}
	if ov == nil {
		return ""
	}
	s, _ := ov.Value.(string)
	return s
}

// kiln reports whether the VM carries kiln's labels.
func (vm *vmInfo) kiln() bool { return vm.labels[KeyCluster] != "" && !vm.template }

// ownedBy is nil when the VM is a machine of cluster.
func (vm *vmInfo) ownedBy(cluster string) error {
	switch got := vm.labels[KeyCluster]; {
	case !vm.kiln():
		return ErrNotKiln
	case got != cluster:
		return fmt.Errorf("%w %q", ErrNameTaken, got)
	}
	return nil
}

func (vm *vmInfo) machine() provisioner.Machine {
	return provisioner.Machine{
		Name:    vm.name,
		Cluster: vm.labels[KeyCluster],
		Role:    vm.labels[KeyRole],
		Pool:    vm.labels[KeyPool],
		Image:   vm.labels[KeyImage],
		State:   machineState(vm.power, vm.conn),
		Created: vm.created,
		Address: vm.address,
	}
}

// machineState maps vCenter's view of a VM to a provisioner.State. A VM whose files vCenter has lost
// (orphaned, inaccessible, invalid) is in error. A disconnected one (its host is unreachable from
// vCenter) keeps the last power state vCenter knows: losing vCenter's connection says nothing
// about the node, and health judges it by its node conditions and probes.
func machineState(power types.VirtualMachinePowerState, conn types.VirtualMachineConnectionState) provisioner.State {
	switch conn {
	case types.VirtualMachineConnectionStateOrphaned,
		types.VirtualMachineConnectionStateInaccessible,
		types.VirtualMachineConnectionStateInvalid:
		return provisioner.StateError
	}
	switch power {
	case types.VirtualMachinePowerStatePoweredOn:
		return provisioner.StateRunning
	case types.VirtualMachinePowerStatePoweredOff, types.VirtualMachinePowerStateSuspended:
		return provisioner.StateStopped
	}
	return provisioner.StatePending
}
