package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/onprem/metal"
	"github.com/kiln-dev/kiln/onprem/pxe"
	"github.com/kiln-dev/kiln/state"
)

func newPXE(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pxe",
		Short: "Boot bare-metal machines over the network: DHCP, TFTP and HTTP",
	}
	cmd.AddCommand(newPXEServe(g), newPXELoad(g))
	return cmd
}

// readInventory decodes machines.yaml and returns its warnings too, each formatted as
// FILE:LINE:COL: PATH: warning: MESSAGE.
func readInventory(path string) (*pxe.Inventory, []string, error) {
	data, err := readlimit.ReadFile(path, readlimit.Inventory)
	if err != nil {
		return nil, nil, fmt.Errorf("read inventory: %w", err)
	}
	inv, findings, err := pxe.DecodeInventoryFindings(data, path)
	var warnings []string
	for _, f := range findings {
		warnings = append(warnings, f.Format(path))
	}
	return inv, warnings, err
}

func newPXELoad(g *globals) *cobra.Command {
	var (
		invPath string
		strict  bool
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Check machines.yaml and load it into the state store",
		Long: `load decodes the machine inventory strictly (every error with its field and line) and stores
it in the state store, where 'kiln pxe serve' and the metal provider find it. Warnings (a Redfish BMC
over http:// or whose certificate is not verified, with insecure: true; an IPMI BMC) name the machine
and are printed as FILE:LINE:COL: PATH: warning: MESSAGE; they do not fail unless --strict is given.`,
		Example: `  kiln pxe load -i machines.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, warnings, err := readInventory(invPath)
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(g.errOut, w)
			}
			if strict && len(warnings) > 0 {
				return fmt.Errorf("%s: %d warnings with --strict", invPath, len(warnings))
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			defer st.Close()
			if err := pxe.SaveInventory(st, inv); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "loaded %d machines, %d groups, %d profiles from %s\n",
				len(inv.Machines), len(inv.Groups), len(inv.Profiles), invPath)
			return nil
		},
	}
	cmd.Flags().StringVarP(&invPath, "inventory", "i", "machines.yaml", "machine inventory")
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}

// pxeServeOptions are the flags of 'kiln pxe serve'.
type pxeServeOptions struct {
	specPath, invPath     string
	listen, baseURL       string
	tlsCert, tlsKey       string
	assets, ipxeDir       string
	dhcpMode, iface       string
	serverIP, leaseRange  string
	router, dns, netmask  string
	leaseTime             time.Duration
	tftp                  string
	relays                []string
	flushEvery            time.Duration
	refreshIgnitionPeriod time.Duration
}

func newPXEServe(g *globals) *cobra.Command {
	o := pxeServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the network boot of the machines in the inventory",
		Long: `serve runs the boot server: HTTP always (the iPXE chain script /boot.ipxe, each machine's own
script /ipxe, its own Ignition /ignition, and the kernels and initrds under /assets/), TFTP for the iPXE
binaries with --tftp, and DHCP with --dhcp proxy (boot information only, next to the network's DHCP
server) or --dhcp full (addresses from --range too, for an isolated provisioning network).

Only the machines of the inventory boot; an unknown MAC gets no DHCP answer and a 404. Each machine's
Ignition is rendered once at start (and again before its bootstrap token runs out) and served from
memory. Every boot step is recorded in the state store: see 'kiln get machines'.`,
		Example: `  kiln pxe serve -f cluster.yaml -i machines.yaml --assets /srv/kiln \
      --base-url http://10.0.0.1:8080 --dhcp full --interface br0 --server-ip 10.0.0.1 \
      --range 10.0.0.100-10.0.0.200 --tftp :69`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runPXEServe(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVarP(&o.invPath, "inventory", "i", "", "machine inventory (default: the spec's metal.inventory, else machines.yaml)")
	f.StringVar(&o.listen, "listen", ":8080", "HTTP listen address")
	f.StringVar(&o.baseURL, "base-url", "", "URL machines reach this server at (default: the spec's metal.bootServerURL)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "key of --tls-cert (PEM)")
	f.StringVar(&o.assets, "assets", "", "directory of kernels and initrds served under /assets/")
	f.StringVar(&o.ipxeDir, "ipxe-dir", "", "directory of undionly.kpxe and ipxe.efi (default: found under /usr/lib/ipxe or /boot)")
	f.StringVar(&o.dhcpMode, "dhcp", "off", "DHCP: off, proxy or full")
	f.StringVar(&o.iface, "interface", "", "network interface DHCP listens on")
	f.StringVar(&o.serverIP, "server-ip", "", "this server's IPv4 address on the boot network (default: the interface's)")
	f.StringVar(&o.leaseRange, "range", "", "full DHCP: addresses to lease, FIRST-LAST")
	f.StringVar(&o.netmask, "netmask", "255.255.255.0", "full DHCP: netmask of the boot network")
	f.StringVar(&o.router, "router", "", "full DHCP: default gateway")
	f.StringVar(&o.dns, "dns", "", "full DHCP: DNS servers, comma-separated")
	f.DurationVar(&o.leaseTime, "lease-time", time.Hour, "full DHCP: lease time")
	f.StringArrayVar(&o.relays, "relay", nil, "DHCP: answer requests relayed by this relay agent (its giaddr); repeat for more (default: no relayed request is answered)")
	f.StringVar(&o.tftp, "tftp", "", "TFTP listen address, e.g. :69 (default off)")
	f.DurationVar(&o.flushEvery, "flush-every", time.Second, "how often boot records are written to the state store")
	completeFlag(cmd, "dhcp", "off", "proxy", "full")
	return cmd
}

func runPXEServe(ctx context.Context, g *globals, o pxeServeOptions) error {
	c, err := loadSpec(o.specPath)
	if err != nil {
		return err
	}
	if o.invPath == "" {
		o.invPath = "machines.yaml"
		if m := c.Spec.Provider.Metal; m != nil && m.Inventory != "" {
			o.invPath = m.Inventory
		}
	}
	if o.baseURL == "" {
		if m := c.Spec.Provider.Metal; m != nil {
			o.baseURL = m.BootServerURL
		}
		if o.baseURL == "" {
			return errors.New("--base-url is required (or set the spec's provider.metal.bootServerURL)")
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	inv, warnings, err := readInventory(o.invPath)
	if err != nil {
		return err
	}
	log := g.log
	for _, w := range warnings {
		log.Warn("inventory", "warning", w)
	}

	cfg := pxe.Config{HTTPAddr: o.listen, TLSCert: o.tlsCert, TLSKey: o.tlsKey, TFTPAddr: o.tftp,
		FlushEvery: o.flushEvery, Logger: log}
	if o.ipxeDir == "" && (o.tftp != "" || o.dhcpMode != "off") {
		if o.ipxeDir, err = pxe.FindIPXEDir(pxe.IPXEDirs); err != nil {
			return err
		}
	}
	if err := pxeDHCP(&cfg, o); err != nil {
		return err
	}

	// The boot service reads everything from the state store at once, then lets it go so that 'kiln
	// get machines' can read it while the server runs: the records are flushed by opening it briefly.
	svc := pxe.NewService(pxe.ServiceConfig{
		Inventory: inv,
		Open: func() (pxe.Store, error) {
			st, err := g.openState()
			if err != nil {
				return nil, err
			}
			return st, nil
		},
		Renderer: func(st pxe.Store, now time.Time) (pxe.RenderFunc, time.Time, error) {
			return pxeRenderer(st, c, now)
		},
		Allocated: metal.AllocatedIgnition,
		Leases:    cfg.Leases,
		Logger:    log,
	})
	if err := svc.Load(); err != nil {
		return err
	}
	cfg.HTTP = pxe.HTTPConfig{BaseURL: o.baseURL, Inventory: inv, AssetsDir: o.assets, IPXEDir: o.ipxeDir}
	return svc.Serve(ctx, cfg, func(a pxe.Addrs) {
		log.Info("serving", "http", a.HTTP.String(), "base", o.baseURL, "tftp", addrString(a.TFTP),
			"dhcp", o.dhcpMode, "machines", len(inv.Machines))
	})
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// pxeDHCP fills cfg's DHCP side from the flags.
func pxeDHCP(cfg *pxe.Config, o pxeServeOptions) error {
	switch o.dhcpMode {
	case "off", "":
		return nil
	case string(pxe.ModeProxy), string(pxe.ModeFull):
	default:
		return fmt.Errorf("--dhcp %q: want off, proxy or full", o.dhcpMode)
	}
	if o.iface == "" {
		return errors.New("--interface is required with --dhcp")
	}
	p := pxe.Policy{Mode: pxe.Mode(o.dhcpMode), HTTPBase: strings.TrimRight(o.baseURL, "/"), LeaseTime: o.leaseTime}
	for _, r := range o.relays {
		ip := net.ParseIP(r).To4()
		if ip == nil {
			return fmt.Errorf("--relay %q: not an IPv4 address", r)
		}
		p.Relays = append(p.Relays, ip)
	}
	if o.serverIP != "" {
		p.ServerIP = net.ParseIP(o.serverIP).To4()
		if p.ServerIP == nil {
			return fmt.Errorf("--server-ip %q: not an IPv4 address", o.serverIP)
		}
	} else {
		ifc, err := net.InterfaceByName(o.iface)
		if err != nil {
			return fmt.Errorf("--interface %s: %w", o.iface, err)
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				p.ServerIP = n.IP.To4()
				break
			}
		}
		if p.ServerIP == nil {
			return fmt.Errorf("--interface %s has no IPv4 address: pass --server-ip", o.iface)
		}
	}
	if p.Mode == pxe.ModeFull {
		first, last, ok := strings.Cut(o.leaseRange, "-")
		if !ok {
			return fmt.Errorf("--range %q: want FIRST-LAST", o.leaseRange)
		}
		l, err := pxe.NewLeases(net.ParseIP(strings.TrimSpace(first)), net.ParseIP(strings.TrimSpace(last)))
		if err != nil {
			return fmt.Errorf("--range: %w", err)
		}
		cfg.Leases = l
		mask := net.ParseIP(o.netmask).To4()
		if mask == nil {
			return fmt.Errorf("--netmask %q: not an IPv4 mask", o.netmask)
		}
		p.Netmask = net.IPMask(mask)
		if o.router != "" {
			if p.Router = net.ParseIP(o.router).To4(); p.Router == nil {
				return fmt.Errorf("--router %q: not an IPv4 address", o.router)
			}
		}
		for _, d := range strings.Split(o.dns, ",") {
			if d = strings.TrimSpace(d); d == "" {
				continue
			}
			ip := net.ParseIP(d).To4()
			if ip == nil {
				return fmt.Errorf("--dns %q: not an IPv4 address", d)
			}
			p.DNS = append(p.DNS, ip)
		}
	}
	cfg.DHCP, cfg.DHCPInterface = p, o.iface
	return nil
}

// pxeRenderer renders the machines' configs with a bootstrap token valid for at least half its
// lifetime at now, and says when that token expires.
func pxeRenderer(st secrets.TokenStore, c *v1alpha1.Cluster, now time.Time) (pxe.RenderFunc, time.Time, error) {
	b, tok, err := joinToken(st, c, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	r, err := ignition.New(ignition.Input{Cluster: c, Secrets: b, Token: tok, Placement: metal.Placement()})
	if err != nil {
		return nil, time.Time{}, err
	}
	return func(m *pxe.Machine) ([]byte, error) { return renderMachine(r, m) }, tok.Expires, nil
}

func renderMachine(r *ignition.Renderer, m *pxe.Machine) ([]byte, error) {
	n := ignition.Node{Name: m.Name, Role: m.Role}
	if m.Role == v1alpha1.RoleWorker {
		n.Pool = m.Pool
	}
	return r.Render(n)
}

// machineView is one machine as 'kiln get machines' prints it.
type machineView struct {
	Name   string                      `json:"name"`
	MAC    string                      `json:"mac"`
	Role   string                      `json:"role"`
	Pool   string                      `json:"pool,omitempty"`
	Labels map[string]string           `json:"labels,omitempty"`
	IP     string                      `json:"ip,omitempty"`
	Phase  string                      `json:"phase"`
	Steps  map[pxe.Step]pxe.StepRecord `json:"steps,omitempty"`
}

// newGetMachines is 'kiln get machines'.
func newGetMachines(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "machines",
		Aliases: []string{"machine"},
		Short:   "List the bare-metal machines of the inventory and how far each has booted",
		Long: `machines lists the machines of the inventory loaded by 'kiln pxe load' or 'kiln pxe serve', with
the last boot step each took: dhcp (answered), tftp (iPXE binary fetched), script (its iPXE script),
kernel, initrd and ignition (its own config fetched). -o wide adds the time of each step; json and
yaml print everything.`,
		Example: `  kiln get machines
  kiln get machines -o wide
  kiln get machines -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "text", "wide", "json", "yaml":
			default:
				return fmt.Errorf("-o %s: unknown output format (want text, wide, json or yaml)", format)
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			inv, err := pxe.LoadInventory(st)
			if errors.Is(err, state.ErrNotFound) {
				st.Close()
				return errors.New("no machine inventory in the state store: run 'kiln pxe load -i machines.yaml' first")
			}
			if err != nil {
				st.Close()
				return err
			}
			recs, err := pxe.LoadRecords(st)
			st.Close()
			if err != nil {
				return err
			}
			views := machineViews(inv, recs)
			switch format {
			case "json", "yaml":
				return printStructured(g.out, format, views)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			if format == "wide" {
				fmt.Fprintln(tw, "NAME\tMAC\tROLE\tPOOL\tIP\tPHASE\tDHCP\tSCRIPT\tKERNEL\tINITRD\tIGNITION\tLABELS")
			} else {
				fmt.Fprintln(tw, "NAME\tMAC\tROLE\tPOOL\tIP\tPHASE")
			}
			for _, v := range views {
				ip := v.IP
				if ip == "" {
					ip = "-"
				}
				if format == "wide" {
					at := func(s pxe.Step) string {
						if r, ok := v.Steps[s]; ok {
							return r.Last.Local().Format("15:04:05")
						}
						return "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.MAC, v.Role, v.Pool, ip, v.Phase,
						at(pxe.StepDHCP), at(pxe.StepScript), at(pxe.StepKernel), at(pxe.StepInitrd), at(pxe.StepIgnition), labelString(v.Labels))
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.MAC, v.Role, v.Pool, ip, v.Phase)
				}
			}
			return tw.Flush()
		},
	}
	addFormatFlag(cmd, &format, formatText, formatWide, formatJSON, formatYAML)
	return cmd
}

func machineViews(inv *pxe.Inventory, recs []pxe.Record) []machineView {
	byMAC := map[string]pxe.Record{}
	for _, r := range recs {
		byMAC[r.MAC] = r
	}
	views := make([]machineView, 0, len(inv.Machines))
	for _, m := range inv.Machines {
		v := machineView{Name: m.Name, MAC: m.MAC, Role: m.Role, Pool: m.Pool, Labels: m.Labels, Phase: "waiting"}
		if r, ok := byMAC[m.MAC]; ok {
			v.IP, v.Steps = r.IP, r.Steps
			var last time.Time
			for _, s := range pxe.Steps {
				if sr, ok := r.Steps[s]; ok && !sr.Last.Before(last) {
					v.Phase, last = string(s), sr.Last
				}
			}
		}
		views = append(views, v)
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	return views
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}
