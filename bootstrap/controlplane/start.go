package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// DefaultReadyTimeout bounds how long etcd and kube-apiserver may each take to become ready.
const DefaultReadyTimeout = 2 * time.Minute

// stopTimeout is how long a component may take to exit after SIGTERM before it is killed.
const stopTimeout = 15 * time.Second

// AdminKubeconfigFile is the admin kubeconfig Start writes in the directory (not on a node: the admin
// credential never leaves the state store but for this file, mode 0600).
const AdminKubeconfigFile = "admin.conf"

// Options say how to start a control plane.
type Options struct {
	// Dir is the node's root: /etc/kubernetes/pki/ca.key is written to Dir/etc/kubernetes/pki/ca.key.
	// Required; made if missing. Logs go to Dir/log/<program>.log.
	Dir string
	// Binaries to run. Required (see FindBinaries).
	Binaries Binaries
	// APIPort is the loopback port of kube-apiserver; 0 picks a free one.
	APIPort int
	// Progress, if set, receives one line per step and, while waiting, the reason a component is not
	// ready yet.
	Progress io.Writer
	// ReadyTimeout caps the wait for etcd and for kube-apiserver, each; Start's ctx bounds the whole
	// start. Defaults to DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// ControlPlane is a running control plane. Stop it with Stop.
type ControlPlane struct {
	// Dir is the node's root (Options.Dir, absolute).
	Dir string
	// EtcdURL and APIURL are the https URLs of etcd's client port and of kube-apiserver.
	EtcdURL, APIURL string
	// AdminKubeconfig is the path of a kubeconfig of kiln's admin (cluster-admin) for APIURL.
	AdminKubeconfig string
	// Applied is what the cluster init applied (namespaces, RBAC bindings, bootstrap tokens).
	Applied []clusterapply.Change
	// EtcdReady and APIReady are how long etcd took to answer its health check after it was started,
	// and kube-apiserver its /readyz after it was started.
	EtcdReady, APIReady time.Duration

	procs  []*process
	exited chan *process // receives each process that exits before Stop
	stop   sync.Once

	// What restarting kube-apiserver needs (see ApplyEncryptionConfig).
	binaries     Binaries
	cmds         []Command // by start order: etcd, kube-apiserver, then its clients
	apiClient    *http.Client
	readyTimeout time.Duration
	progress     func(string, ...any)
	appliedSum   string // of the encryption config kube-apiserver runs with
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
	// restarting is set before kiln stops the process to start it again: its exit is not reported.
	restarting atomic.Bool
}

// Start renders the first control-plane node's Ignition config from in, writes its files under
// opts.Dir (see Node.Write), writes an admin kubeconfig there, and starts etcd and kube-apiserver with
// the rendered flags adjusted to loopback (see Node.Commands). When kube-apiserver answers /readyz it
// runs the node's cluster init as its kiln-cluster-init.service does (see clusterInit), then starts
// kube-controller-manager and
// kube-scheduler. ctx bounds the start (not the components, which run until Stop); on error,
// whatever was started is stopped.
func Start(ctx context.Context, in ignition.Input, opts Options) (cp *ControlPlane, err error) {
	if opts.Dir == "" {
		return nil, errors.New("controlplane: no directory")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	progress := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	r, err := ignition.New(in)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	nodeName := secrets.ControlPlaneNodeNames(in.Cluster)[0]
	raw, err := r.Render(ignition.Node{Name: nodeName, Role: v1alpha1.RoleControlPlane})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	cfg, _, err := v3_5.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("controlplane: the rendered config: %w", err)
	}
	node, err := Extract(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	if err := node.Write(dir); err != nil {
		return nil, err
	}
	progress("wrote the files of control-plane node %s under %s", nodeName, dir)

	free, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	ports := Ports{EtcdClient: free[0], EtcdPeer: free[1], APIServer: free[2], ControllerManager: free[3], Scheduler: free[4]}
	if opts.APIPort != 0 {
		ports.APIServer = opts.APIPort
	}
	cmds, err := node.Commands(dir, ports)
	if err != nil {
		return nil, err
	}
	cp = &ControlPlane{
		Dir:             dir,
		EtcdURL:         "https://" + net.JoinHostPort(loopback, strconv.Itoa(ports.EtcdClient)),
		APIURL:          "https://" + net.JoinHostPort(loopback, strconv.Itoa(ports.APIServer)),
		AdminKubeconfig: filepath.Join(dir, AdminKubeconfigFile),
		exited:          make(chan *process, len(cmds)),
		binaries:        opts.Binaries,
		cmds:            cmds,
		readyTimeout:    opts.ReadyTimeout,
		progress:        progress,
	}
	defer func() {
		if err != nil {
			_ = cp.Stop()
			cp = nil
		}
	}()

	// The components' kubeconfigs, and the admin's, to this API server.
	for _, k := range []string{controllerManagerConfig, schedulerKubeconfig, clusterInitKubeconfig, clusterInitGrantConfig} {
		p := under(dir, k)
		data, err := os.ReadFile(p)
		if err != nil {
			return cp, fmt.Errorf("controlplane: %w", err)
		}
		if data, err = PointKubeconfig(data, cp.APIURL); err != nil {
			return cp, fmt.Errorf("controlplane: %s: %w", k, err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return cp, fmt.Errorf("controlplane: %w", err)
		}
	}
	admin, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{
		ClusterName: in.Cluster.Metadata.Name, Server: cp.APIURL, CAPEM: in.Secrets.ClusterCA.CertPEM,
		User: "kiln-admin", ClientCertPEM: in.Secrets.Admin.CertPEM, ClientKeyPEM: in.Secrets.Admin.KeyPEM,
	})
	if err != nil {
		return cp, fmt.Errorf("controlplane: admin kubeconfig: %w", err)
	}
	_ = os.Remove(cp.AdminKubeconfig)
	if err := os.WriteFile(cp.AdminKubeconfig, admin, 0o600); err != nil {
		return cp, fmt.Errorf("controlplane: %w", err)
	}

	// etcd, ready when its /health says so to the API server's etcd client certificate.
	etcdClient, err := httpsClient(
		under(dir, path.Join(kubecfg.DefaultPKIDir, kubecfg.EtcdCACert)),
		under(dir, path.Join(kubecfg.DefaultPKIDir, kubecfg.APIServerEtcdClientCert)),
		under(dir, path.Join(kubecfg.DefaultPKIDir, kubecfg.APIServerEtcdClientKey)))
	if err != nil {
		return cp, err
	}
	start := time.Now()
	etcd, err := cp.run(opts.Binaries, cmds[0])
	if err != nil {
		return cp, err
	}
	progress("started etcd, listening on %s", cp.EtcdURL)
	if err := waitReady(ctx, etcd, opts.ReadyTimeout, progress, func(ctx context.Context) error {
		return etcdHealthy(ctx, etcdClient, cp.EtcdURL+"/health")
	}); err != nil {
		return cp, err
	}
	cp.EtcdReady = time.Since(start)
	progress("etcd ready after %v", cp.EtcdReady.Round(time.Millisecond))

	// kube-apiserver, ready when its /readyz answers 200 to the admin.
	adminClient, err := clientFromKubeconfig(admin)
	if err != nil {
		return cp, err
	}
	cp.apiClient = adminClient
	start = time.Now()
	api, err := cp.run(opts.Binaries, cmds[1])
	if err != nil {
		return cp, err
	}
	progress("started kube-apiserver, listening on %s", cp.APIURL)
	if err := waitReady(ctx, api, opts.ReadyTimeout, progress, func(ctx context.Context) error {
		return apiReady(ctx, adminClient, cp.APIURL+"/readyz")
	}); err != nil {
		return cp, err
	}
	cp.APIReady = time.Since(start)
	progress("kube-apiserver ready after %v", cp.APIReady.Round(time.Millisecond))
	enc, err := os.ReadFile(under(dir, kubecfg.DefaultEncryptionConfigFile))
	if err != nil {
		return cp, fmt.Errorf("controlplane: %w", err)
	}
	if err := cp.markApplied(enc); err != nil {
		return cp, err
	}

	if cp.Applied, err = clusterInit(ctx, dir, node); err != nil {
		return cp, err
	}
	progress("cluster init applied %d objects (%s, %s), removed its credentials", len(cp.Applied), clusterInitRBAC, manifestsDir)

	for _, c := range cmds[2:] {
		if _, err := cp.run(opts.Binaries, c); err != nil {
			return cp, err
		}
		progress("started %s", strings.TrimSuffix(c.Unit, ".service"))
	}
	return cp, nil
}

// clusterInit does what kiln-cluster-init.service does: it applies the RBAC of the cluster init
// (/etc/kubernetes/cluster-init-rbac.yaml) with the grant's kubeconfig, then the manifests of
// /etc/kubernetes/kiln/, in file name order, with the cluster init's own, and removes both kubeconfigs,
// whether it succeeded or not. RBAC reaches the API server's authorizer a moment after it is written:
// a refusal of the manifests is retried for rbacPropagation.
func clusterInit(ctx context.Context, dir string, node *Node) (changes []clusterapply.Change, err error) {
	defer func() {
		for _, k := range []string{clusterInitGrantConfig, clusterInitKubeconfig} {
			if rerr := os.Remove(under(dir, k)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("controlplane: cluster init: %w", rerr))
			}
		}
	}()
	grant, err := restConfig(dir, clusterInitGrantConfig)
	if err != nil {
		return nil, err
	}
	apply, err := restConfig(dir, clusterInitKubeconfig)
	if err != nil {
		return nil, err
	}
	rbac, err := os.ReadFile(under(dir, clusterInitRBAC))
	if err != nil {
		return nil, fmt.Errorf("controlplane: cluster init: %w", err)
	}
	var names []string
	for _, f := range node.Files {
		if path.Dir(f.Path) == manifestsDir && (strings.HasSuffix(f.Path, ".yaml") || strings.HasSuffix(f.Path, ".yml") || strings.HasSuffix(f.Path, ".json")) {
			names = append(names, f.Path)
		}
	}
	slices.Sort(names)
	var manifests [][]byte
	for _, n := range names {
		data, err := os.ReadFile(under(dir, n))
		if err != nil {
			return nil, fmt.Errorf("controlplane: cluster init: %w", err)
		}
		manifests = append(manifests, data)
	}
	if len(manifests) == 0 {
		return nil, fmt.Errorf("controlplane: cluster init: %s: %w", manifestsDir, ErrNotRendered)
	}

	granted, err := clusterapply.Apply(ctx, grant, rbac)
	if err != nil {
		return granted, fmt.Errorf("controlplane: cluster init: %s: %w", clusterInitRBAC, err)
	}
	var applied []clusterapply.Change
	var applyErr error
	err = wait.PollUntilContextTimeout(ctx, readyPoll, rbacPropagation, true, func(ctx context.Context) (bool, error) {
		applied, applyErr = clusterapply.Apply(ctx, apply, manifests...)
		return !apierrors.IsForbidden(applyErr), nil
	})
	changes = append(granted, applied...)
	if applyErr != nil {
		return changes, fmt.Errorf("controlplane: cluster init: %w", applyErr)
	}
	if err != nil {
		return changes, fmt.Errorf("controlplane: cluster init: %w", err)
	}
	return changes, nil
}

// rbacPropagation bounds how long the cluster init waits for its RBAC to take effect.
const rbacPropagation = 30 * time.Second

// restConfig reads the kubeconfig at path on the node under dir.
func restConfig(dir, path string) (*rest.Config, error) {
	conf, err := os.ReadFile(under(dir, path))
	if err != nil {
		return nil, fmt.Errorf("controlplane: cluster init: %w", err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(conf)
	if err != nil {
		return nil, fmt.Errorf("controlplane: cluster init: %s: %w", path, err)
	}
	return rc, nil
}

// run starts one component in its own process group (a terminal's Ctrl-C reaches kiln, which stops
// the components in order) with its output in dir/log/<program>.log.
func (cp *ControlPlane) run(b Binaries, c Command) (*process, error) {
	bin := b.binary(c.Unit)
	if bin == "" {
		return nil, fmt.Errorf("controlplane: %s: %w: no program given", c.Unit, ErrMissingBinary)
	}
	name := strings.TrimSuffix(c.Unit, ".service")
	logDir := filepath.Join(cp.Dir, "log")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	p := &process{name: name, log: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	p.cmd = exec.Command(bin, c.Args...)
	p.cmd.Dir = cp.Dir
	p.cmd.Stdout = f
	p.cmd.Stderr = f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("controlplane: start %s: %w", name, err)
	}
	cp.procs = append(cp.procs, p)
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
		if !p.restarting.Load() {
			cp.exited <- p
		}
	}()
	return p, nil
}

// Wait blocks until ctx is done, returning nil, or until a component exits, returning an error that
// wraps ErrExited and holds the last lines of its log. Meanwhile it restarts kube-apiserver whenever
// the encryption config file changes (a rotation of the encryption key by another process, see
// DirAPIServers), as a node agent would.
func (cp *ControlPlane) Wait(ctx context.Context) error {
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-cp.exited:
			return exitError(p)
		case <-tick.C:
			if err := cp.followEncryptionConfig(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

func exitError(p *process) error {
	return fmt.Errorf("controlplane: %s: %w (%v); the last lines of %s:\n%s", p.name, ErrExited, p.err, p.log, tail(p.log, 20))
}

// Stop stops the components in the reverse order of their start: SIGTERM, then SIGKILL for one that
// has not exited after 15 s. It returns an error naming each component that had to be killed. Calling
// it again does nothing.
func (cp *ControlPlane) Stop() error {
	var errs []error
	cp.stop.Do(func() {
		for i := len(cp.procs) - 1; i >= 0; i-- {
			p := cp.procs[i]
			if terminate(p) {
				errs = append(errs, fmt.Errorf("controlplane: %s (pid %d) did not exit within %v of SIGTERM and was killed", p.name, p.cmd.Process.Pid, stopTimeout))
			}
		}
	})
	return errors.Join(errs...)
}

// terminate stops p if it runs: SIGTERM, then SIGKILL after stopTimeout. It returns whether p had to
// be killed.
func terminate(p *process) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// Pids returns the process IDs of the components, in start order.
func (cp *ControlPlane) Pids() []int {
	var pids []int
	for _, p := range cp.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// readyPoll is how often waitReady asks a component whether it is ready; progressEvery, how often it
// says why one is not ready yet.
const (
	readyPoll     = 100 * time.Millisecond
	progressEvery = 5 * time.Second
)

// waitReady polls ready until it succeeds, p exits, or ctx is done or timeout has passed, whichever
// is first (the budget is the caller's ctx, capped at timeout). Every 5 s it reports why p is not
// ready yet.
func waitReady(ctx context.Context, p *process, timeout time.Duration, progress func(string, ...any), ready func(context.Context) error) error {
	start := time.Now()
	lastReport := start
	var notReady error
	err := wait.PollUntilContextTimeout(ctx, readyPoll, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, exitError(p)
		default:
		}
		if notReady = ready(ctx); notReady == nil {
			return true, nil
		}
		if time.Since(lastReport) >= progressEvery {
			progress("waiting for %s (%v): %v", p.name, time.Since(start).Round(time.Second), notReady)
			lastReport = time.Now()
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrExited):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("controlplane: waiting for %s: %w", p.name, ctx.Err())
	}
	if notReady == nil {
		notReady = err
	}
	return fmt.Errorf("controlplane: %s not ready after %v: %w; the last lines of %s:\n%s", p.name, timeout, notReady, p.log, tail(p.log, 20))
}

func etcdHealthy(ctx context.Context, hc *http.Client, url string) error {
	code, body, err := get(ctx, hc, url)
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &h) != nil || h.Health != "true" {
		return fmt.Errorf("/health: %d %s", code, strings.TrimSpace(string(body)))
	}
	return nil
}

func apiReady(ctx context.Context, hc *http.Client, url string) error {
	code, body, err := get(ctx, hc, url)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("/readyz: %d %s", code, lastLine(string(body)))
	}
	return nil
}

func get(ctx context.Context, hc *http.Client, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, body, err
}

// httpsClient trusts the CA in caFile and presents the certificate in certFile and keyFile.
func httpsClient(caFile, certFile, keyFile string) (*http.Client, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return tlsClient(ca, pki.KeyPair{CertPEM: certPEM, KeyPEM: keyPEM})
}

func tlsClient(caPEM []byte, kp pki.KeyPair) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("controlplane: the CA certificate does not parse")
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("controlplane: client certificate: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
	}}}, nil
}

// clientFromKubeconfig is an HTTPS client with the kubeconfig's CA and client certificate.
func clientFromKubeconfig(data []byte) (*http.Client, error) {
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return tlsClient(rc.CAData, pki.KeyPair{CertPEM: rc.CertData, KeyPEM: rc.KeyData})
}

// freePorts returns n distinct free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return nil, fmt.Errorf("controlplane: a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
