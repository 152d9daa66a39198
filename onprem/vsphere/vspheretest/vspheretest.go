// Package vspheretest starts govmomi's vCenter simulator as kiln's vSphere tests use it: a VPX
// inventory over TLS with a user and password, a "kiln" VM folder, and the simulator's first VM
// powered off and marked as a template.
package vspheretest

import (
	"context"
	"crypto/tls"
	"net/url"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

// The simulator's names that a spec points at.
const (
	User       = "kiln"
	Password   = "sim-password"
	Datacenter = "DC0"
	Cluster    = "DC0_C0"
	Folder     = "/DC0/vm/kiln"
	Datastore  = "LocalDS_0"
	Network    = "DC0_DVPG0"
	Template   = "DC0_H0_VM0"
)

// Sim is a running simulator.
type Sim struct {
	// URL is the SDK endpoint, with the user and password.
	URL *url.URL
	// CAFile is the server certificate, to trust it.
	CAFile string
	// Client is logged in, for the test's own look at the inventory.
	Client *govmomi.Client
	// Folder is the "kiln" VM folder.
	Folder *object.Folder
}

// Start starts the simulator, stopped when t ends.
func Start(t testing.TB) *Sim {
	t.Helper()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{User: url.UserPassword(User, Password)}
	s := m.Service.NewServer()
	t.Cleanup(func() { s.Close(); m.Remove() })
	caFile, err := s.CertificateFile()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The test's own client trusts the simulator's certificate, as the code under test does (CAFile).
	sc := soap.NewClient(s.URL, false)
	if err := sc.SetRootCAs(caFile); err != nil {
		t.Fatal(err)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, s.URL.User); err != nil {
		t.Fatal(err)
	}
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.Datacenter(ctx, Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	folder, err := folders.VmFolder.CreateFolder(ctx, "kiln")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := finder.VirtualMachine(ctx, Template)
	if err != nil {
		t.Fatal(err)
	}
	if task, err := tmpl.PowerOff(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("power off template: %v", err)
	}
	if err := tmpl.MarkAsTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	return &Sim{URL: s.URL, CAFile: caFile, Client: c, Folder: folder}
}
