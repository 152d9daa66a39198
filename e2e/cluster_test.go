package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

// demoCluster is the quickstart's cluster as the checks see it: kiln's command line on its state, an
// admin client, and SSH with the cluster's key and the nodes' pinned host keys.
type demoCluster struct {
	t          *testing.T
	kiln       func(args ...string) ([]byte, error)
	spec, dir  string
	admin      *kubernetes.Clientset
	server     string
	ca         *x509.CertPool
	signer     ssh.Signer
	hostKeys   ssh.HostKeyCallback
	knownHosts string            // the file kiln known-hosts wrote
	hostAlgos  []string          // the pinned keys' algorithms, so that a node is asked for a key that was pinned
	nodeSSH    map[string]string // machine name -> SSH endpoint
	nodeRoles  map[string]string // machine name -> role
	controlCPU string            // the control-plane machine's name
}

func newDemoCluster(t *testing.T, kiln func(args ...string) ([]byte, error), demo string) *demoCluster {
	t.Helper()
	c := &demoCluster{t: t, kiln: kiln, spec: filepath.Join(demo, "cluster.yaml"), dir: demo,
		nodeSSH: map[string]string{}, nodeRoles: map[string]string{}}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(demo, "kubeconfig"))
	if err != nil {
		t.Fatalf("the quickstart's kubeconfig: %v", err)
	}
	c.admin = kubernetes.NewForConfigOrDie(cfg)
	c.server = cfg.Host
	c.ca = x509.NewCertPool()
	if !c.ca.AppendCertsFromPEM(cfg.CAData) {
		t.Fatalf("the quickstart's kubeconfig has no CA certificate")
	}
	key := filepath.Join(t.TempDir(), "id")
	if out, err := kiln("ssh-key", "-f", c.spec, "--output-file", key); err != nil {
		t.Fatalf("kiln ssh-key: %v\n%s", err, out)
	}
	pem, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if c.signer, err = ssh.ParsePrivateKey(pem); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	out, err := kiln("known-hosts", "-f", c.spec, "--wait", "2m", "--output-file", kh)
	if err != nil {
		t.Fatalf("kiln known-hosts: %v\n%s", err, out)
	}
	c.knownHosts = kh
	if c.hostKeys, err = knownhosts.New(kh); err != nil {
		t.Fatal(err)
	}
	c.hostAlgos = keyAlgorithms(t, kh)
	nodes, err := kiln("get", "nodes", "-f", c.spec, "-o", "json")
	if err != nil {
		t.Fatalf("kiln get nodes: %v\n%s", err, nodes)
	}
	var views []struct{ Name, Role, SSH string }
	if err := json.Unmarshal(nodes, &views); err != nil {
		t.Fatalf("kiln get nodes -o json: %v\n%s", err, nodes)
	}
	for _, v := range views {
		c.nodeSSH[v.Name], c.nodeRoles[v.Name] = v.SSH, v.Role
		if v.Role == "control-plane" {
			c.controlCPU = v.Name
		}
	}
	return c
}

// ssh runs command on machine name as the admin user, with the cluster's key and the pinned host key.
func (c *demoCluster) ssh(name, command string) (string, error) {
	client, err := ssh.Dial("tcp", c.nodeSSH[name], &ssh.ClientConfig{User: "kiln", Auth: []ssh.AuthMethod{ssh.PublicKeys(c.signer)},
		HostKeyCallback: c.hostKeys, HostKeyAlgorithms: c.hostAlgos, Timeout: time.Minute})
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", name, err)
	}
	defer client.Close()
	// A connection made just before the node reboots waits forever for an answer: bound the
	// whole exchange.
	timer := time.AfterFunc(2*time.Minute, func() { client.Close() })
	defer timer.Stop()
	s, err := client.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", name, err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if err := s.Run(command); err != nil {
		return out.String(), fmt.Errorf("ssh %s: %s: %w: %s", name, command, err, errOut.String())
	}
	return out.String(), nil
}

// pod runs a one-shot kiln-echo pod on node with args, waits for it to finish, and returns its phase
// and its log, read through the API (the kubelet's serving certificate, which kiln approved).
func (c *demoCluster) pod(t *testing.T, ctx context.Context, name, node string, args ...string) (corev1.PodPhase, string) {
	t.Helper()
	pods := c.admin.CoreV1().Pods("default")
	p := restrictedPod(name, node, args...)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(ctx, 3*time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = got.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("pod %s on %s did not finish (phase %q): %v", name, node, phase, err)
	}
	// The logs come through the kubelet's serving certificate, which kiln approves in its next pass
	// after the kubelet asked: a node that has just joined may not have it yet.
	var log []byte
	var logErr error
	err = wait.PollUntilContextTimeout(ctx, 5*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		log, logErr = pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		return logErr == nil, nil
	})
	if err != nil {
		t.Fatalf("logs of pod %s on %s (the kubelet's serving certificate must be approved): %v (%v)", name, node, logErr, err)
	}
	return phase, string(log)
}

// restrictedPod is a kiln-echo pod on node that the Pod Security "restricted" level admits.
func restrictedPod(name, node string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "echo", Image: kubecfg.EchoImage, ImagePullPolicy: corev1.PullNever, Args: args,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
}

// checkCluster asserts, through the Kubernetes API and SSH, what the quickstart's cluster promises
// once a worker has been killed and replaced.
func checkCluster(t *testing.T, c *demoCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()

	t.Run("3 Nodes Ready, the killed worker's Node gone", func(t *testing.T) {
		nodes, err := c.admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, n := range nodes.Items {
			if n.Name == "demo-workers-0" {
				t.Errorf("the killed worker's Node is still there")
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if len(nodes.Items) != 3 || ready != 3 {
			t.Errorf("%d Nodes, %d Ready; want 3 and 3", len(nodes.Items), ready)
		}
	})

	var workers []string
	for name, role := range c.nodeRoles {
		if role == "worker" {
			workers = append(workers, name)
		}
	}
	if len(workers) != 2 {
		t.Fatalf("workers %v, want 2", workers)
	}
	var server *corev1.Pod
	t.Run("pod to pod across two nodes, and kubectl logs", func(t *testing.T) {
		var err error
		server, err = c.admin.CoreV1().Pods("default").Get(ctx, "echo-demo-workers-1", metav1.GetOptions{})
		if err != nil || server.Status.PodIP == "" {
			t.Fatalf("the quickstart's pod on demo-workers-1: %v (%+v)", err, server)
		}
		client := workers[0]
		if client == server.Spec.NodeName {
			client = workers[1]
		}
		phase, log := c.pod(t, ctx, "e2e-pod-to-pod", client, "-get", "http://"+server.Status.PodIP+":8080/", "-timeout", "30s")
		if phase != corev1.PodSucceeded || !strings.Contains(log, "hostname=echo-demo-workers-1") {
			t.Errorf("a pod on %s fetching %s on %s: %s\n%s", client, server.Status.PodIP, server.Spec.NodeName, phase, log)
		}
	})
	t.Run("a pod reaches the API through the kubernetes Service", func(t *testing.T) {
		svc, err := c.admin.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sa := "/var/run/secrets/kubernetes.io/serviceaccount/"
		phase, log := c.pod(t, ctx, "e2e-api-via-service", workers[0], "-get", "https://"+svc.Spec.ClusterIP+"/version",
			"-ca", sa+"ca.crt", "-token", sa+"token", "-timeout", "30s")
		if phase != corev1.PodSucceeded || !strings.Contains(log, `"gitVersion"`) {
			t.Errorf("GET https://%s/version from a pod: %s\n%s", svc.Spec.ClusterIP, phase, log)
		}
	})
	t.Run("anonymous requests are refused with 401", func(t *testing.T) {
		hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.ca, ServerName: serverName(t, c)}}}
		resp, err := hc.Get(c.server + "/api/v1/namespaces/kube-system/secrets")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET: %s, want 401", resp.Status)
		}
	})
	t.Run("a user without a binding gets 403", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "nobody")
		if out, err := c.kiln("kubeconfig", "-f", c.spec, "--user", "e2e-nobody", "--ttl", "10m", "--output-file", kc); err != nil {
			t.Fatalf("kiln kubeconfig: %v\n%s", err, out)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kubernetes.NewForConfigOrDie(cfg).CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("list secrets as e2e-nobody: %v, want 403 Forbidden", err)
		}
	})
	t.Run("a privileged pod is rejected in the restricted default namespace", func(t *testing.T) {
		p := restrictedPod("e2e-privileged", workers[0])
		// Valid as a pod (privileged with allowPrivilegeEscalation false is not), refused only by
		// Pod Security.
		p.Spec.Containers[0].SecurityContext.Privileged = new(true)
		p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		_, err := c.admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("create a privileged pod: %v, want Forbidden by PodSecurity", err)
		}
	})
	t.Run("Secrets are encrypted in etcd", func(t *testing.T) {
		value := "e2e-plaintext-" + fmt.Sprint(time.Now().UnixNano())
		_, err := c.admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "e2e-encrypted"},
			StringData: map[string]string{"v": value}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		stored := c.etcdValue(t, "/registry/secrets/default/e2e-encrypted")
		if !bytes.HasPrefix(stored, []byte("k8s:enc:")) || bytes.Contains(stored, []byte(value)) {
			t.Errorf("the Secret in etcd is not encrypted: %q", stored[:min(64, len(stored))])
		}
	})
	t.Run("kiln rotate certs reaches the control-plane machine", func(t *testing.T) {
		served := func() *x509.Certificate {
			t.Helper()
			conn, err := tls.Dial("tcp", strings.TrimPrefix(c.server, "https://"), &tls.Config{RootCAs: c.ca, ServerName: serverName(t, c)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0]
		}
		before := served()
		if out, err := c.kiln("rotate", "certs", "-f", c.spec, "--all"); err != nil || !strings.Contains(string(out), "renewed 9 certificates") {
			t.Fatalf("kiln rotate certs: %v\n%s", err, out)
		}
		if after := served(); after.SerialNumber.Cmp(before.SerialNumber) == 0 || !after.NotAfter.After(before.NotAfter) {
			t.Errorf("the API server serves serial %x until %s, as before the renewal", after.SerialNumber, after.NotAfter)
		}
		// The kubeconfig's admin certificate, issued before, still works; so does a new one.
		if _, err := c.admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("the admin client after the renewal: %v", err)
		}
	})
	t.Run("kiln image audit: no drift from level1 on a working node; containers confined by AppArmor", func(t *testing.T) {
		for name, addr := range c.nodeSSH {
			host, port, _ := net.SplitHostPort(addr)
			out, err := c.kiln("image", "audit", host, "-p", port, "-f", c.spec, "--known-hosts", c.knownHosts)
			if err != nil || !strings.Contains(string(out), "no drift") {
				t.Errorf("%s: kiln image audit: %v\n%s", name, err, out)
			}
		}
		// The quickstart's echo pod runs on demo-workers-1 (until the reboot below drains it): its
		// processes carry containerd's default profile.
		labels, err := c.ssh("demo-workers-1", `sudo sh -c 'for p in /proc/[0-9]*; do cat $p/attr/current 2>/dev/null; echo; done | sort | uniq -c'`)
		if err != nil || !strings.Contains(labels, "cri-containerd.apparmor.d (enforce)") {
			t.Errorf("demo-workers-1: no process confined by cri-containerd.apparmor.d (enforce): %v\n%s", err, labels)
		}
	})
	t.Run("a security update's reboot goes through the agent: one worker, drained, uncordoned", func(t *testing.T) {
		target, other := workers[0], workers[1]
		if dump, err := c.ssh(target, "apt-config dump"); err != nil || !strings.Contains(dump, `Unattended-Upgrade::Automatic-Reboot "false";`) {
			t.Errorf("%s: apt-config dump does not leave reboots to the agent (%v):\n%s", target, err, dump)
		}
		if out, err := c.ssh(target, "systemctl is-enabled kiln-reboot.timer"); err != nil || strings.TrimSpace(out) != "enabled" {
			t.Errorf("%s: kiln-reboot.timer is %q (%v), want enabled", target, out, err)
		}
		bootID := func(node string) string {
			out, err := c.ssh(node, "cat /proc/sys/kernel/random/boot_id")
			if err != nil {
				return ""
			}
			return strings.TrimSpace(out)
		}
		firstBoot, otherBoot := bootID(target), bootID(other)
		if firstBoot == "" || otherBoot == "" {
			t.Fatalf("boot ids of %s and %s: %q, %q", target, other, firstBoot, otherBoot)
		}
		var mu sync.Mutex
		cordoned := map[string]bool{}
		w, err := c.admin.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		go func() {
			for ev := range w.ResultChan() {
				if n, ok := ev.Object.(*corev1.Node); ok && n.Spec.Unschedulable {
					mu.Lock()
					cordoned[n.Name] = true
					mu.Unlock()
				}
			}
		}()
		start := time.Now()
		if _, err := c.ssh(target, "sudo touch /run/reboot-required"); err != nil {
			t.Fatal(err)
		}
		var node *corev1.Node
		err = wait.PollUntilContextTimeout(ctx, 10*time.Second, 15*time.Minute, false, func(ctx context.Context) (bool, error) {
			if b := bootID(target); b == "" || b == firstBoot {
				return false, nil
			}
			n, err := c.admin.CoreV1().Nodes().Get(ctx, target, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			node = n
			ready := false
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					ready = cond.Status == corev1.ConditionTrue
				}
			}
			return ready && !n.Spec.Unschedulable && n.Annotations["reboot.kiln.dev/last"] != "", nil
		})
		if err != nil {
			out, _ := c.kiln("get", "reboots", "-f", c.spec)
			t.Fatalf("%s did not reboot through the agent and come back Ready and uncordoned: %v (Node: %+v)\n%s", target, err, node, out)
		}
		t.Logf("%s: from /run/reboot-required to rebooted, Node Ready and uncordoned in %s", target, time.Since(start).Round(time.Second))
		mu.Lock()
		if !cordoned[target] {
			t.Errorf("%s rebooted without being cordoned first", target)
		}
		if cordoned[other] {
			t.Errorf("%s was cordoned too", other)
		}
		mu.Unlock()
		if b := bootID(other); b != otherBoot {
			t.Errorf("%s rebooted too (boot id %s, was %s)", other, b, otherBoot)
		}
		// The target's own row: Ready, not cordoned, no reboot needed, its last reboot recorded.
		out, err := c.kiln("get", "reboots", "-f", c.spec, "-o", "json")
		var view struct {
			Nodes []struct {
				Name, LastReboot          string
				Ready, Cordoned, Required bool
			}
		}
		if err != nil || json.Unmarshal(out, &view) != nil {
			t.Fatalf("kiln get reboots -o json: %v\n%s", err, out)
		}
		found := false
		for _, n := range view.Nodes {
			if n.Name == target {
				found = true
				if !n.Ready || n.Cordoned || n.Required || n.LastReboot == "" {
					t.Errorf("kiln get reboots shows %s as %+v, want Ready, uncordoned, no reboot needed, a last reboot", target, n)
				}
			}
		}
		if !found {
			t.Errorf("kiln get reboots does not show %s:\n%s", target, out)
		}
		out, _ = c.kiln("get", "reboots", "-f", c.spec)
		t.Logf("kiln get reboots:\n%s", out)
	})
	t.Run("SSH: the cluster key works, passwords are refused, on every node", func(t *testing.T) {
		for name, addr := range c.nodeSSH {
			if out, err := c.ssh(name, "id -un"); err != nil || strings.TrimSpace(out) != "kiln" {
				t.Errorf("%s: key login: %q, %v", name, out, err)
			}
			for _, user := range []string{"kiln", "root"} {
				_, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("kiln")},
					HostKeyCallback: c.hostKeys, HostKeyAlgorithms: c.hostAlgos, Timeout: time.Minute})
				if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
					t.Errorf("%s: password login as %s: %v, want refused", name, user, err)
				}
			}
		}
	})
}

// etcdValue reads key from etcd's gRPC gateway on the control-plane node, with the API server's etcd
// client certificate.
func (c *demoCluster) etcdValue(t *testing.T, key string) []byte {
	t.Helper()
	pki := "/etc/kubernetes/pki/"
	out, err := c.ssh(c.controlCPU, "sudo curl -sS --cacert "+pki+"etcd/ca.crt --cert "+pki+"apiserver-etcd-client.crt --key "+
		pki+"apiserver-etcd-client.key https://127.0.0.1:2379/v3/kv/range -d '{\"key\":\""+base64.StdEncoding.EncodeToString([]byte(key))+"\"}'")
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ KVs []struct{ Value []byte } }
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.KVs) != 1 {
		t.Fatalf("etcd range %s: %v\n%s", key, err, out)
	}
	return r.KVs[0].Value
}

// serverName is the name the API server's certificate is checked against: the kubeconfig's
// tls-server-name when kiln reaches the endpoint through a forwarded port.
func serverName(t *testing.T, c *demoCluster) string {
	cfg, err := clientcmd.LoadFromFile(filepath.Join(c.dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		return cl.TLSServerName
	}
	t.Fatal(errors.New("the kubeconfig names no cluster"))
	return ""
}
