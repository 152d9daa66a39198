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
	"github.com/kiln-dev/kiln/bootstrap/enroll"
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
	cmd.AddCommand(newPXEServe(g), newPXELoad(g), newPXEArm(g), newPXEDisarm(g))
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
	specPath, invPath    string
	listen, baseURL      string
	tlsCert, tlsKey      string
	assets, ipxeDir      string
	dhcpMode, iface      string
	serverIP, leaseRange string
	router, dns, netmask string
	leaseTime            time.Duration
	tftp                 string
	relays               []string
	flushEvery           time.Duration
	ticketTTL            time.Duration
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

HTTP listens on port 8080 of the boot network's address: --server-ip, else the IPv4 address of
--interface; one of them (or --listen) is required, so that the server is never reachable from every
network the host is on.

Only a machine that is armed installs: 'kiln pxe arm NAME' (or the metal provider, when it creates the
machine) arms it. Its next script carries the URL of its Ignition config with a one-time token
(--ticket-ttl), which only the address that asked for the script may use (with --dhcp full: only the
address kiln leased the machine); the first fetch spends it and disarms the machine, and a second
fetch is refused and shown as a possible theft by 'kiln get machines'. Every other MAC, in the
inventory or not, gets the same script, which exits to the next boot device; an unknown MAC gets no
DHCP answer. The inventory machines' configs are rendered at start (and again before their bootstrap
token runs out). Every boot step is recorded in the state store: see 'kiln get machines'.`,
		Example: `  kiln pxe serve -f cluster.yaml -i machines.yaml --assets /srv/kiln \
      --base-url http://10.0.0.1:8080 --dhcp full --interface br0 \
      --range 10.0.0.100-10.0.0.200 --tftp 10.0.0.1:69
  kiln pxe arm demo-control-plane-0`,
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
	f.StringVar(&o.listen, "listen", "", "HTTP listen address (default: port 8080 of --server-ip, else of the --interface's IPv4 address)")
	f.StringVar(&o.baseURL, "base-url", "", "URL machines reach this server at (default: the spec's metal.bootServerURL)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "key of --tls-cert (PEM)")
	f.StringVar(&o.assets, "assets", "", "directory of kernels and initrds served under /assets/")
	f.StringVar(&o.ipxeDir, "ipxe-dir", "", "directory of undionly.kpxe and ipxe.efi (default: found under /usr/lib/ipxe or /boot)")
	f.StringVar(&o.dhcpMode, "dhcp", "off", "DHCP: off, proxy or full")
	f.StringVar(&o.iface, "interface", "", "network interface of the boot network: HTTP listens on its address, DHCP on it")
	f.StringVar(&o.serverIP, "server-ip", "", "this server's IPv4 address on the boot network (default: the interface's)")
	f.StringVar(&o.leaseRange, "range", "", "full DHCP: addresses to lease, FIRST-LAST")
	f.StringVar(&o.netmask, "netmask", "255.255.255.0", "full DHCP: netmask of the boot network")
	f.StringVar(&o.router, "router", "", "full DHCP: default gateway")
	f.StringVar(&o.dns, "dns", "", "full DHCP: DNS servers, comma-separated")
	f.DurationVar(&o.leaseTime, "lease-time", time.Hour, "full DHCP: lease time")
	f.StringArrayVar(&o.relays, "relay", nil, "DHCP: answer requests relayed by this relay agent (its giaddr); repeat for more (default: no relayed request is answered)")
	f.StringVar(&o.tftp, "tftp", "", "TFTP listen address, e.g. :69 (default off)")
	f.DurationVar(&o.flushEvery, "flush-every", time.Second, "how often boot records are written to the state store, and arms read from it")
	f.DurationVar(&o.ticketTTL, "ticket-ttl", enroll.DefaultTTL, "how long the one-time Ignition URL of a script can be used")
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

	listen, err := listenAddr(o)
	if err != nil {
		return err
	}
	cfg := pxe.Config{HTTPAddr: listen, TLSCert: o.tlsCert, TLSKey: o.tlsKey, TFTPAddr: o.tftp,
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
		Cluster:   c.Metadata.Name,
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
		TicketTTL: o.ticketTTL,
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

// serverIP is this server's address on the boot network: --server-ip, else the IPv4 address of
// --interface.
func serverIP(o pxeServeOptions) (net.IP, error) {
	if o.serverIP != "" {
		ip := net.ParseIP(o.serverIP).To4()
		if ip == nil {
			return nil, fmt.Errorf("--server-ip %q: not an IPv4 address", o.serverIP)
		}
		return ip, nil
	}
	if o.iface == "" {
		return nil, errors.New("--interface is required: the boot network's interface, whose address kiln listens on (or pass --server-ip, or --listen ADDRESS:PORT)")
	}
	ifc, err := net.InterfaceByName(o.iface)
	if err != nil {
		return nil, fmt.Errorf("--interface %s: %w", o.iface, err)
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("--interface %s has no IPv4 address: pass --server-ip", o.iface)
}

// listenAddr is where HTTP listens: --listen, else port 8080 of the server's boot network address.
func listenAddr(o pxeServeOptions) (string, error) {
	if o.listen != "" {
		return o.listen, nil
	}
	ip, err := serverIP(o)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), "8080"), nil
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
	var err error
	if p.ServerIP, err = serverIP(o); err != nil {
		return err
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
	Name   string            `json:"name"`
	MAC    string            `json:"mac"`
	Role   string            `json:"role"`
	Pool   string            `json:"pool,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	IP     string            `json:"ip,omitempty"`
	Phase  string            `json:"phase"`
	// Enroll is where the machine's installation stands: enrollState.
	Enroll string `json:"enroll"`
	// Arm is the machine's arm, without the config it may carry.
	Arm *pxe.Arm `json:"arm,omitempty"`
	// Ticket is the enrollment ticket of the last script the machine was given: when it was issued,
	// spent, and every refused attempt.
	Ticket *enroll.Ticket              `json:"ticket,omitempty"`
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
the last boot step each took: dhcp (answered), tftp (iPXE binary fetched), script (its iPXE script, to
install), kernel, initrd and ignition (its own config served), and where its installation stands
(ENROLL): armed (it installs at its next network boot; 'arm expired' once the arm lapsed), then the
enrollment ticket of its script: pending, spent (its config was served) or expired, with
"(possible theft)" when its URL was tried from another address or again after it was spent. -o wide
adds the time of each step; json and yaml print everything, with every refused attempt.`,
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
			views, err := loadMachineViews(g, time.Now())
			if err != nil {
				return err
			}
			switch format {
			case "json", "yaml":
				return printStructured(g.out, format, views)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			if format == "wide" {
				fmt.Fprintln(tw, "NAME\tMAC\tROLE\tPOOL\tIP\tPHASE\tENROLL\tDHCP\tSCRIPT\tKERNEL\tINITRD\tIGNITION\tLABELS")
			} else {
				fmt.Fprintln(tw, "NAME\tMAC\tROLE\tPOOL\tIP\tPHASE\tENROLL")
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
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.MAC, v.Role, v.Pool, ip, v.Phase, v.Enroll,
						at(pxe.StepDHCP), at(pxe.StepScript), at(pxe.StepKernel), at(pxe.StepInitrd), at(pxe.StepIgnition), labelString(v.Labels))
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.MAC, v.Role, v.Pool, ip, v.Phase, v.Enroll)
				}
			}
			return tw.Flush()
		},
	}
	addFormatFlag(cmd, &format, formatText, formatWide, formatJSON, formatYAML)
	return cmd
}

// loadMachineViews reads the inventory, the boot records, the arms and the tickets the records name,
// and lets the state store go.
func loadMachineViews(g *globals, now time.Time) ([]machineView, error) {
	st, err := g.openState()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	inv, err := pxe.LoadInventory(st)
	if errors.Is(err, state.ErrNotFound) {
		return nil, errors.New("no machine inventory in the state store: run 'kiln pxe load -i machines.yaml' first")
	}
	if err != nil {
		return nil, err
	}
	recs, err := pxe.LoadRecords(st)
	if err != nil {
		return nil, err
	}
	arms, err := pxe.LoadArms(st)
	if err != nil {
		return nil, err
	}
	tickets := map[string]enroll.Ticket{}
	for _, r := range recs {
		if r.Ticket == nil {
			continue
		}
		t, err := enroll.Get(st, r.Ticket.Cluster, r.Ticket.Machine)
		if errors.Is(err, state.ErrNotFound) {
			continue // revoked
		}
		if err != nil {
			return nil, err
		}
		tickets[r.MAC] = t
	}
	return machineViews(inv, recs, arms, tickets, now), nil
}

func machineViews(inv *pxe.Inventory, recs []pxe.Record, arms map[string]pxe.Arm, tickets map[string]enroll.Ticket, now time.Time) []machineView {
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
		if a, ok := arms[m.MAC]; ok {
			a.Config = nil
			v.Arm = &a
		}
		if t, ok := tickets[m.MAC]; ok {
			v.Ticket = &t
		}
		v.Enroll = enrollState(v.Arm, v.Ticket, now)
		views = append(views, v)
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	return views
}

// enrollState says where a machine's installation stands at now: "armed" (or "arm expired") while
// it has an arm and no ticket issued under it, else its ticket's state ("pending", "spent",
// "expired"), else "-"; a ticket that may have been stolen says so in every case.
func enrollState(arm *pxe.Arm, t *enroll.Ticket, now time.Time) string {
	switch {
	case arm != nil && (t == nil || t.Issued.Before(arm.At)):
		s := "armed"
		if !arm.Active(now) {
			s = "arm expired"
		}
		if t != nil && t.Suspect() {
			s += " (possible theft)"
		}
		return s
	case t != nil:
		return t.State(now)
	}
	return "-"
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
