package crashpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/onprem/vsphere"
	"github.com/kiln-dev/kiln/onprem/vsphere/vspheretest"
)

// soapTask is the vSphere method of a SOAP request that starts a task: every call that changes the
// inventory (CloneVM_Task, PowerOnVM_Task, PowerOffVM_Task, ReconfigVM_Task, Destroy_Task).
var soapTask = regexp.MustCompile(`<(?:\w+:)?(\w+_Task)[\s>]`)

func TestCrashPointsVSphere(t *testing.T) {
	sim := vspheretest.Start(t)
	configServer := net.JoinHostPort("127.0.0.1", strconv.Itoa(testtool.FreePort(t)))
	ctx := context.Background()
	c, folder := sim.Client, sim.Folder

	up := *sim.URL
	up.User, up.Path = nil, ""
	ca, err := os.ReadFile(sim.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("%s: no certificate", sim.CAFile)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	retrieve := func() ([]mo.VirtualMachine, error) {
		v, err := view.NewManager(c.Client).CreateContainerView(ctx, folder.Reference(), []string{"VirtualMachine"}, false)
		if err != nil {
			return nil, err
		}
		defer v.Destroy(ctx)
		var vms []mo.VirtualMachine
		err = v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.extraConfig", "runtime.powerState"}, &vms)
		return vms, err
	}
	list := func(t *testing.T) []mo.VirtualMachine {
		vms, err := retrieve()
		if err != nil {
			t.Fatal(err)
		}
		return vms
	}
	labels := func(vm mo.VirtualMachine) map[string]string {
		l := map[string]string{}
		if vm.Config == nil {
			return l
		}
		for _, o := range vm.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov != nil {
				if s, ok := ov.Value.(string); ok {
					l[ov.Key] = s
				}
			}
		}
		return l
	}
	b := backend{
		name:     v1alpha1.ProviderVSphere,
		upstream: &up,
		client:   client,
		env: func(_, ca string) []string {
			return []string{"KILN_VSPHERE_USERNAME=kiln", "KILN_VSPHERE_PASSWORD=sim-password", "KILN_VSPHERE_CA_FILE=" + ca}
		},
		spec: func(cl *v1alpha1.Cluster, host string) {
			// A control plane's config does not fit guestinfo: kiln serves it, guestinfo carries a stub.
			cl.Spec.Provider.VSphere = &v1alpha1.VSphereProvider{Server: host, Datacenter: "DC0", Cluster: "DC0_C0",
				Folder: "/DC0/vm/kiln", Datastore: "LocalDS_0", Network: "DC0_DVPG0", ConfigServer: configServer}
			cl.Spec.ControlPlane.Image = "DC0_H0_VM0"
			for i := range cl.Spec.NodePools {
				cl.Spec.NodePools[i].Image = "DC0_H0_VM0"
			}
		},
		mutating: func(_ *http.Request, body []byte) (string, bool) {
			if m := soapTask.FindSubmatch(body); m != nil {
				return string(m[1]), true
			}
			return "", false
		},
		machines: func(t *testing.T) []machine {
			var ms []machine
			for _, vm := range list(t) {
				l := labels(vm)
				if l[vsphere.KeyCluster] == "" {
					// Everything in kiln's folder is kiln's: an unlabelled VM is a clone kiln lost.
					t.Errorf("VM %s in kiln's folder carries no %s label", vm.Name, vsphere.KeyCluster)
					continue
				}
				if l[vsphere.KeyCluster] != "demo" {
					continue
				}
				ms = append(ms, machine{Name: vm.Name, Pool: l[vsphere.KeyPool],
					Running: vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn})
			}
			return ms
		},
		running: func() ([]string, error) {
			vms, err := retrieve()
			var names []string
			for _, vm := range vms {
				if labels(vm)[vsphere.KeyCluster] == "demo" && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
					names = append(names, vm.Name)
				}
			}
			return names, err
		},
		fail: func(t *testing.T, name string) {
			for _, vm := range list(t) {
				if vm.Name == name {
					task, err := object.NewVirtualMachine(c.Client, vm.Reference()).PowerOff(ctx)
					if err == nil {
						err = task.Wait(ctx)
					}
					if err != nil {
						t.Fatalf("power off %s: %v", name, err)
					}
					return
				}
			}
			t.Fatalf("no VM %s", name)
		},
	}
	runScenarios(t, newHarness(t, b))
}
