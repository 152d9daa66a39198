package command

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/nodeagent/fleetlock"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// DefaultFleetLockListen is where serve-fleetlock listens unless told otherwise: loopback, as
// FleetLock has no authentication (any client that reaches the server can take a slot, or free
// another client's by sending its id), so by default only the node's own Zincati reaches it; port
// 3333 is airlock's, the reference server's, so Zincati configs look as people know them.
const DefaultFleetLockListen = "127.0.0.1:3333"

// shutdownTimeout bounds how long a stop waits for requests under way.
const shutdownTimeout = 10 * time.Second

type fleetlockOptions struct {
	listen, tlsCert, tlsKey, kubeconfig string
	groups                              []string
	leaseDuration                       time.Duration
}

func newServeFleetlock(g *globals) *cobra.Command {
	o := fleetlockOptions{}
	cmd := &cobra.Command{
		Use:   "serve-fleetlock --kubeconfig FILE --group NAME[=SLOTS]...",
		Short: "Serve FleetLock (Zincati's reboot coordination) on kiln's per-pool reboot lock",
		Long: `serve-fleetlock serves the FleetLock protocol, POST /v1/pre-reboot and POST /v1/steady-state,
which Zincati (the update agent of Fedora CoreOS) speaks with its fleet_lock strategy, on top of
kiln's reboot lock: the Leases kiln-reboot-<pool>-<slot> in the namespace kube-node-lease that
kiln's cluster init creates, the same lock kiln-node's own reboot agent takes. Image-based nodes
that bring their own updater so reboot one at a time per pool too (or --group's SLOTS at a time).

Each --group NAME=SLOTS is a Zincati group ([identity] group) and the kiln pool of the same name,
with its number of slots (the pool's maxConcurrentReboots; its Leases must exist). The control
plane's pool, control-plane, has 1 slot, always. Zincati's id (derived from /etc/machine-id) is the
holder of a slot. A slot held longer than --lease-duration without a new pre-reboot is free for
others: a node that never comes back does not block its pool for good, so make it longer than a
reboot takes.

Point Zincati at it with a drop-in, e.g. /etc/zincati/config.d/55-kiln-fleetlock.toml:

  [identity]
  group = "workers"

  [updates]
  strategy = "fleet_lock"

  [updates.fleet_lock]
  base_url = "http://127.0.0.1:3333/"

By default it listens on loopback only (` + DefaultFleetLockListen + `): FleetLock has no authentication, so
anything that reaches the server can take a slot or free another client's. Run it on every node,
next to the node's Zincati. Listening elsewhere, serve it over TLS (--tls-cert, --tls-key; base_url
https://...) on a network only the nodes reach.

--kubeconfig is a credential that may get and update the groups' Leases and nothing else (kiln's
RBAC: a Role naming them, bound to the group kiln:reboot:<pool>). It cannot be a node's own
identity (system:node:<name>): the NodeRestriction admission plugin lets a node write no Lease but
its own heartbeat.`,
		Example: `  kiln-node serve-fleetlock --kubeconfig /etc/kiln/reboot.kubeconfig --group workers=2
  kiln-node serve-fleetlock --kubeconfig /etc/kiln/reboot.kubeconfig --group control-plane \
    --listen 10.0.0.5:3333 --tls-cert /etc/kiln/fleetlock.crt --tls-key /etc/kiln/fleetlock.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			slots, err := parseGroups(o.groups)
			if err != nil {
				return err
			}
			if err := o.check(); err != nil {
				return err
			}
			client, err := kubeClient(o.kubeconfig, "serve-fleetlock")
			if err != nil {
				return err
			}
			groups := map[string]*rebootlock.Semaphore{}
			for name, n := range slots {
				groups[name] = &rebootlock.Semaphore{Client: client, Pool: name, Slots: n, Duration: o.leaseDuration}
			}
			return o.serve(cmd.Context(), fleetlock.New(groups, log), log, slots)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", DefaultFleetLockListen, "address to serve on (loopback by default: FleetLock has no authentication)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&o.tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of a credential that may get and update the groups' Leases; required")
	f.StringArrayVar(&o.groups, "group", nil, "a Zincati group and kiln pool, with its slots: NAME=SLOTS (NAME alone: 1 slot; control-plane: always 1); repeatable, at least one")
	f.DurationVar(&o.leaseDuration, "lease-duration", rebootlock.DefaultDuration, "how long a slot stays held without a new pre-reboot; longer than a reboot takes")
	_ = cmd.MarkFlagRequired("kubeconfig")
	_ = cmd.MarkFlagRequired("group")
	_ = cmd.MarkFlagFilename("kubeconfig")
	_ = cmd.MarkFlagFilename("tls-cert")
	_ = cmd.MarkFlagFilename("tls-key")
	return cmd
}

// parseGroups reads the --group flags: each group's name and slots.
func parseGroups(flags []string) (map[string]int, error) {
	groups := map[string]int{}
	var errs []error
	for _, f := range flags {
		name, count, hasCount := strings.Cut(f, "=")
		slots := 1
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("--group %q: SLOTS %q: want a whole number of at least 1", f, count))
				continue
			}
			slots = n
		}
		switch {
		case len(validation.IsDNS1123Label(name)) > 0:
			errs = append(errs, fmt.Errorf("--group %q: %q is not a pool's name (lower-case letters, digits and '-', at most 63)", f, name))
		case name == rebootlock.ControlPlanePool && slots != 1:
			errs = append(errs, fmt.Errorf("--group %q: the control plane reboots one node at a time (etcd keeps its quorum): 1 slot", f))
		case groups[name] != 0:
			errs = append(errs, fmt.Errorf("--group %q: group %q given twice", f, name))
		default:
			groups[name] = slots
		}
	}
	return groups, errors.Join(errs...)
}

func (o *fleetlockOptions) check() error {
	var errs []error
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key: give both or neither"))
	}
	if o.leaseDuration < time.Minute {
		errs = append(errs, fmt.Errorf("--lease-duration %v: want at least 1m, longer than a reboot takes", o.leaseDuration))
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want HOST:PORT: %w", o.listen, err))
	}
	return errors.Join(errs...)
}

// serve serves h on o.listen until ctx ends, then lets the requests under way finish.
func (o *fleetlockOptions) serve(ctx context.Context, h http.Handler, log *slog.Logger, groups map[string]int) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      fleetlock.DefaultTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", o.tlsCert, o.tlsKey, err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && scheme == "http" {
		log.Warn("serving FleetLock without TLS beyond loopback: anything on the network can take and free slots", "listen", ln.Addr().String())
	}
	log.Info("serving FleetLock", "url", scheme+"://"+ln.Addr().String()+"/", "groups", groups, "leaseDuration", o.leaseDuration.String())
	done := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			done <- srv.ServeTLS(ln, "", "")
		} else {
			done <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("serve-fleetlock: %w", err)
	case <-ctx.Done():
	}
	stop, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(stop); err != nil {
		return fmt.Errorf("serve-fleetlock: stop: %w", err)
	}
	log.Info("stopped serving FleetLock")
	return nil
}

// kubeClient is a client with the credential of kubeconfig, naming the agent in its user agent.
func kubeClient(kubeconfig, agent string) (kubernetes.Interface, error) {
	if _, err := os.Stat(kubeconfig); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	rc.UserAgent = "kiln-node/" + Version + " " + agent
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return client, nil
}
