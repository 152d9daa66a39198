package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/sshexec"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// rotateUser is the identity of the short-lived certificate with which kiln rotate reaches the API.
const rotateUser = "kiln:rotate"

// nodeControlPlane is the control plane of a cluster's control-plane machines, reached one machine
// at a time over SSH, as the spec's admin user with the cluster's key, accepting only each machine's
// pinned host keys (as kiln ssh does); and the cluster's API, through the provider, with a
// certificate of kiln's own valid for an hour. It implements rotate.APIServers and
// rotate.CertServers.
type nodeControlPlane struct {
	nodes   []machineHostKeys
	user    string
	signer  ssh.Signer
	known   string // known_hosts file of the nodes' pinned keys
	timeout time.Duration
	// server and tlsName are where kiln reaches the API; rest is a client config for it.
	server, tlsName string
	roots           *x509.CertPool
	rest            *rest.Config
	log             func(format string, args ...any)
}

// reachNodes finds cluster c's running control-plane machines and their pinned host keys, and the
// API. dir holds the known_hosts file; the caller removes it.
func (g *globals) reachNodes(ctx context.Context, c *v1alpha1.Cluster, b *secrets.Bundle, specPath, dir string) (*nodeControlPlane, error) {
	if len(b.SSH.PrivateKeyPEM) == 0 {
		return nil, fmt.Errorf("cluster %s uses your own SSH keys (spec.ssh.authorizedKeys): kiln holds no key to reach its control-plane machines with", c.Metadata.Name)
	}
	signer, err := ssh.ParsePrivateKey(b.SSH.PrivateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: SSH key: %w", c.Metadata.Name, err)
	}
	p, ms, err := g.machines(ctx, c, specPath)
	if err != nil {
		return nil, err
	}
	var cps []provisioner.Machine
	for _, m := range ms {
		if m.Role == v1alpha1.RoleControlPlane && m.State == provisioner.StateRunning {
			cps = append(cps, m)
		}
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("cluster %s has no running control-plane machine (and no 'kiln controlplane run' directory was given)", c.Metadata.Name)
	}
	mks, err := g.hostKeysOf(ctx, c, p, cps, 0)
	if err != nil {
		return nil, err
	}
	for _, mk := range mks {
		switch {
		case mk.err != nil:
			return nil, fmt.Errorf("machine %s: %w", mk.machine.Name, mk.err)
		case mk.addr == "":
			return nil, fmt.Errorf("machine %s: no address to reach its SSH at", mk.machine.Name)
		}
	}
	known := filepath.Join(dir, "known_hosts")
	if err := atomicfile.Write(known, []byte(knownHostsText(mks)), 0o600, true); err != nil {
		return nil, err
	}
	server, tlsName, err := apiEndpoint(ctx, c, p, "")
	if err != nil {
		return nil, fmt.Errorf("the API of cluster %s: %w", c.Metadata.Name, err)
	}
	kp, err := access.ClientCertificate(&b.ClusterCA, rand.Reader, time.Now(), rotateUser, []string{secrets.AdminGroup}, time.Hour)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.ClusterCA.CertPEM)
	n := &nodeControlPlane{
		nodes: mks, user: c.Spec.SSH.User, signer: signer, known: known, timeout: sshexec.DefaultTimeout,
		server: server, tlsName: tlsName, roots: roots,
		rest: &rest.Config{Host: server, Timeout: 30 * time.Second, TLSClientConfig: rest.TLSClientConfig{
			ServerName: tlsName, CAData: b.ClusterCA.CertPEM, CertData: kp.CertPEM, KeyData: kp.KeyPEM}},
		log: func(format string, args ...any) { fmt.Fprintf(g.errOut, format+"\n", args...) },
	}
	var names []string
	for _, mk := range mks {
		names = append(names, mk.machine.Name)
	}
	n.log("reaching the control plane of %s over SSH (pinned host keys): %s; its API at %s", c.Metadata.Name, strings.Join(names, ", "), server)
	return n, nil
}

// client is a Kubernetes client of the cluster's API.
func (n *nodeControlPlane) client() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(n.rest)
}

// dial logs in to the machine of mk.
func (n *nodeControlPlane) dial(ctx context.Context, mk machineHostKeys) (*sshexec.Client, error) {
	c, err := sshexec.Dial(ctx, mk.addr, sshexec.Config{User: n.user, Signer: n.signer, KnownHosts: n.known, Timeout: n.timeout})
	if errors.Is(err, sshexec.ErrHostKeyMismatch) || errors.Is(err, sshexec.ErrUnknownHostKey) {
		return nil, fmt.Errorf("machine %s: refused: its SSH server offered a host key other than the ones it reported and kiln pinned (%s): %w",
			mk.machine.Name, strings.Join(hostkeys.Fingerprints(mk.keys), ", "), err)
	}
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", mk.machine.Name, err)
	}
	return c, nil
}

// writeFile replaces file p (a fixed path of kiln's) on the machine of c atomically, mode mode, owned
// by root.
func writeFile(ctx context.Context, c *sshexec.Client, p string, mode os.FileMode, data []byte) error {
	tmp := p + ".kiln-new"
	cmd := fmt.Sprintf("sudo -n sh -c 'umask 077 && cat > %s && chmod %o %s && mv -f %s %s'", tmp, mode, tmp, tmp, p)
	var stderr bytes.Buffer
	if err := c.Attach(ctx, cmd, sshexec.Stdio{In: bytes.NewReader(data), Out: &bytes.Buffer{}, Err: &stderr}); err != nil {
		return fmt.Errorf("write %s: %w: %s", p, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// ApplyEncryptionConfig writes config as the encryption config of every control-plane machine and
// restarts its kube-apiserver, one machine at a time, each once the API answers /readyz again.
func (n *nodeControlPlane) ApplyEncryptionConfig(ctx context.Context, config []byte) error {
	if err := kubecfg.CheckEncryptionConfig(config); err != nil {
		return err
	}
	for _, mk := range n.nodes {
		c, err := n.dial(ctx, mk)
		if err != nil {
			return err
		}
		err = writeFile(ctx, c, kubecfg.DefaultEncryptionConfigFile, 0o600, config)
		if err == nil {
			_, err = c.Run(ctx, "sudo -n systemctl restart kube-apiserver.service")
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("machine %s: %w", mk.machine.Name, err)
		}
		start := time.Now()
		if err := n.waitReady(ctx); err != nil {
			return fmt.Errorf("machine %s: kube-apiserver restarted with the new encryption config: %w", mk.machine.Name, err)
		}
		n.log("%s: kube-apiserver restarted with the new encryption config, ready after %v", mk.machine.Name, time.Since(start).Round(time.Second))
	}
	return nil
}

// waitReady waits until the API answers /readyz.
func (n *nodeControlPlane) waitReady(ctx context.Context) error {
	kc, err := n.client()
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, last = kc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the API at %s is not ready: %w", n.server, errors.Join(err, last))
	}
	return nil
}

// ApplyCertificates puts the renewed certificates of b into the files of every control-plane machine
// that hold the certificates for their keys (controlplane.NodeCertFiles), one machine at a time, and
// returns once the API serves its renewed certificate. No component is restarted: kube-apiserver
// reloads its serving certificate, etcd its certificates at each connection; the client
// certificates read at start are used from the components' next restart.
func (n *nodeControlPlane) ApplyCertificates(ctx context.Context, b *secrets.Bundle, renewed []string) error {
	r, err := controlplane.NewRenewal(b, renewed)
	if err != nil {
		return err
	}
	for _, mk := range n.nodes {
		c, err := n.dial(ctx, mk)
		if err != nil {
			return err
		}
		replaced, err := replaceNodeCerts(ctx, c, r)
		c.Close()
		if err != nil {
			return fmt.Errorf("machine %s: %w", mk.machine.Name, err)
		}
		n.log("%s: %d files hold the renewed certificates", mk.machine.Name, replaced)
	}
	if r.APIServer() == nil {
		return nil
	}
	u, err := url.Parse(n.server)
	if err != nil {
		return err
	}
	return controlplane.WaitServing(ctx, u.Host, n.tlsName, n.roots, r.APIServer())
}

func replaceNodeCerts(ctx context.Context, c *sshexec.Client, r *controlplane.Renewal) (int, error) {
	replaced := 0
	for _, p := range controlplane.NodeCertFiles {
		res, err := c.Run(ctx, "sudo -n test -f "+p+" && sudo -n cat "+p)
		var xe *sshexec.ExitError
		if errors.As(err, &xe) && xe.Status == 1 && len(res.Stderr) == 0 {
			continue // not on this node
		}
		if err != nil {
			return replaced, fmt.Errorf("read %s: %w", p, err)
		}
		out, changed, err := r.File(res.Stdout)
		if err != nil {
			return replaced, fmt.Errorf("%s: %w", p, err)
		}
		if !changed {
			continue
		}
		mode := os.FileMode(0o644)
		if path.Ext(p) == ".conf" {
			mode = 0o600
		}
		if err := writeFile(ctx, c, p, mode, out); err != nil {
			return replaced, err
		}
		replaced++
	}
	return replaced, nil
}
