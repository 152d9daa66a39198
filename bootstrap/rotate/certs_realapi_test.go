package rotate

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/statetest"
)

// TestRenewCertsOnARealAPI: against a real kube-apiserver and etcd started from kiln's rendered
// control-plane files, renewing every leaf certificate, after a run that stopped once the bundle
// held the new ones, makes the API server serve its renewed certificate without a restart while a
// client that opens a new TLS connection for every request keeps getting answers; the admin
// kubeconfig of the control plane's directory carries the renewed admin certificate and works; and
// a second run finds nothing due.
//
//	CI=true go test -count=1 -run TestRenewCertsOnARealAPI -v ./bootstrap/rotate
func TestRenewCertsOnARealAPI(t *testing.T) {
	ctx := t.Context()
	in := controlplanetest.Input(t, realSpec)
	b := in.Secrets
	s := statetest.NewFixed(t, statetest.Values{secrets.Bucket: {"rot": b}})
	cp := controlplanetest.Start(t, in)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.ClusterCA.CertPEM)
	api, err := url.Parse(cp.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", api.Host, &tls.Config{RootCAs: roots, ServerName: api.Hostname()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	before := served()

	// A client with the admin certificate it started with, a new connection for every request.
	oldAdmin, err := tls.X509KeyPair(b.Admin.CertPEM, b.Admin.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{oldAdmin}}}}
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := client.Get(cp.APIURL + "/api/v1/namespaces/default")
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("GET %s: %s", resp.Request.URL, resp.Status)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
				continue
			}
			ok.Add(1)
		}
	})

	// A run that stopped once the bundle held the renewed certificates.
	opts := CertOptions{Cluster: "rot", Store: s, Servers: controlplane.DirAPIServers{Dir: cp.Dir},
		RenewBefore: 366 * 24 * time.Hour, Validity: 2 * 365 * 24 * time.Hour, Rand: rand.Reader, Progress: testWriter{t}}
	if _, err := secrets.RenewCertificates(s, "rot", func(secrets.Leaf) bool { return true }, rand.Reader, time.Now(), opts.Validity); err != nil {
		t.Fatal(err)
	}
	res, err := Certs(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // requests on the renewed certificate
	close(stop)
	wg.Wait()
	if !res.Resumed || len(res.Renewed) != 9 {
		t.Errorf("result %+v, want the stopped run's 9 certificates, resumed", res)
	}
	t.Logf("%d requests answered while the certificates were renewed, each on a new TLS connection", ok.Load())
	if n := failed.Load(); n != 0 || ok.Load() < 5 {
		t.Errorf("while the certificates were renewed: %d requests answered, %d failed (last: %v)", ok.Load(), n, lastErr.Load())
	}
	stored, err := secrets.Load(s, "rot")
	if err != nil {
		t.Fatal(err)
	}
	if stored.CertRenewal != nil {
		t.Errorf("the renewal record is left: %+v", stored.CertRenewal)
	}
	want, err := stored.APIServer.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	after := served()
	if after.SerialNumber.Cmp(want.SerialNumber) != 0 || after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Errorf("the API server serves serial %x (was %x), want the renewed %x", after.SerialNumber, before.SerialNumber, want.SerialNumber)
	}
	if d := time.Until(after.NotAfter); d < 700*24*time.Hour {
		t.Errorf("the served certificate expires in %v, want about 2 years", d)
	}

	// The directory's admin kubeconfig carries the renewed admin certificate, and the API takes it.
	rc, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if string(rc.CertData) != string(stored.Admin.CertPEM) {
		t.Error("admin.conf does not carry the renewed admin certificate")
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("admin.conf after the renewal: %v", err)
	}

	again, err := Certs(ctx, opts)
	if err != nil || len(again.Renewed) != 0 {
		t.Errorf("a second run renewed %v (%v), want nothing due", again.Renewed, err)
	}
}
