package kubecfg

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
)

func readPKI(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pki", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKubeconfig(t *testing.T) {
	ca, cert, key := readPKI(t, "ca.crt"), readPKI(t, "client.crt"), readPKI(t, "client.key")
	for _, tc := range []struct {
		name   string
		in     KubeconfigInput
		golden string
	}{
		{
			name: "client certificate",
			in: KubeconfigInput{
				ClusterName: "demo", Server: "https://api.demo.kiln.internal:6443", CAPEM: ca,
				User: "kubernetes-admin", ClientCertPEM: cert, ClientKeyPEM: key,
			},
			golden: "kubeconfig-cert.yaml",
		},
		{
			name: "token",
			in: KubeconfigInput{
				ClusterName: "demo", Server: "https://10.0.0.10:6443", CAPEM: ca,
				User: "tls-bootstrap-token-user", Token: "abcdef.0123456789abcdef",
			},
			golden: "kubeconfig-token.yaml",
		},
		{
			name: "forwarded port, verified as the load balancer",
			in: KubeconfigInput{
				ClusterName: "demo", Server: "https://127.0.0.1:40123", TLSServerName: "api.demo.kiln.internal", CAPEM: ca,
				User: "kiln:alice", ClientCertPEM: cert, ClientKeyPEM: key,
			},
			golden: "kubeconfig-tls-server-name.yaml",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Kubeconfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, data)

			// Field names are client-go's.
			var v1 clientcmdv1.Config
			strict(t, data, &v1)

			// client-go decodes it as clientcmd.Load does (clientcmd itself would add golang.org/x/term
			// to go.mod), and the current context leads to the embedded server, CA and credential.
			obj, _, err := clientcmdlatest.Codec.Decode(data, &schema.GroupVersionKind{Version: clientcmdlatest.Version, Kind: "Config"}, clientcmdapi.NewConfig())
			if err != nil {
				t.Fatalf("decode with client-go: %v", err)
			}
			cfg := obj.(*clientcmdapi.Config)
			ctx, ok := cfg.Contexts[cfg.CurrentContext]
			if !ok {
				t.Fatalf("current context %q not found", cfg.CurrentContext)
			}
			cl, ok := cfg.Clusters[ctx.Cluster]
			if !ok || ctx.Cluster != tc.in.ClusterName {
				t.Fatalf("context cluster %q, want %q", ctx.Cluster, tc.in.ClusterName)
			}
			u, ok := cfg.AuthInfos[ctx.AuthInfo]
			if !ok || ctx.AuthInfo != tc.in.User {
				t.Fatalf("context user %q, want %q", ctx.AuthInfo, tc.in.User)
			}
			if cl.Server != tc.in.Server || cl.TLSServerName != tc.in.TLSServerName {
				t.Errorf("server = %q (TLS name %q), want %q (%q)", cl.Server, cl.TLSServerName, tc.in.Server, tc.in.TLSServerName)
			}
			if !bytes.Equal(cl.CertificateAuthorityData, ca) || cl.CertificateAuthority != "" || cl.InsecureSkipTLSVerify {
				t.Errorf("CA data %d bytes, file %q, insecure %v; want the embedded CA only", len(cl.CertificateAuthorityData), cl.CertificateAuthority, cl.InsecureSkipTLSVerify)
			}
			if !bytes.Equal(u.ClientCertificateData, tc.in.ClientCertPEM) || !bytes.Equal(u.ClientKeyData, tc.in.ClientKeyPEM) || u.ClientCertificate != "" || u.ClientKey != "" {
				t.Errorf("client certificate and key differ from the input or name files")
			}
			if u.Token != tc.in.Token || u.TokenFile != "" {
				t.Errorf("token = %q (file %q), want %q", u.Token, u.TokenFile, tc.in.Token)
			}
		})
	}
}

func TestKubeconfigRejects(t *testing.T) {
	ca, cert, key, other := readPKI(t, "ca.crt"), readPKI(t, "client.crt"), readPKI(t, "client.key"), readPKI(t, "other.key")
	good := KubeconfigInput{ClusterName: "demo", Server: "https://api:6443", CAPEM: ca, User: "admin", ClientCertPEM: cert, ClientKeyPEM: key}
	with := func(f func(*KubeconfigInput)) KubeconfigInput {
		in := good
		f(&in)
		return in
	}
	for _, tc := range []struct {
		name string
		in   KubeconfigInput
		want []string
	}{
		{name: "http server", in: with(func(k *KubeconfigInput) { k.Server = "http://api:6443" }), want: []string{`server "http://api:6443": want https`}},
		{name: "no server", in: with(func(k *KubeconfigInput) { k.Server = "" }), want: []string{`server ""`}},
		{name: "server without host", in: with(func(k *KubeconfigInput) { k.Server = "https:///x" }), want: []string{`server "https:///x"`}},
		{name: "TLS server name with a port", in: with(func(k *KubeconfigInput) { k.TLSServerName = "api:6443" }), want: []string{`tls server name "api:6443"`}},
		{name: "no CA", in: with(func(k *KubeconfigInput) { k.CAPEM = nil }), want: []string{"certificate authority: no certificate"}},
		{name: "CA is a key", in: with(func(k *KubeconfigInput) { k.CAPEM = key }), want: []string{`certificate authority: PEM block 0 is "PRIVATE KEY"`}},
		{name: "CA not PEM", in: with(func(k *KubeconfigInput) { k.CAPEM = []byte("/etc/kubernetes/pki/ca.crt") }), want: []string{"certificate authority: not PEM"}},
		{name: "cert without key", in: with(func(k *KubeconfigInput) { k.ClientKeyPEM = nil }), want: []string{"client certificate and key go together"}},
		{name: "key without cert", in: with(func(k *KubeconfigInput) { k.ClientCertPEM = nil }), want: []string{"client certificate and key go together"}},
		{name: "cert and token", in: with(func(k *KubeconfigInput) { k.Token = "abcdef.0123456789abcdef" }), want: []string{"both a client certificate and a token"}},
		{name: "no credentials", in: with(func(k *KubeconfigInput) { k.ClientCertPEM, k.ClientKeyPEM = nil, nil }), want: []string{"no client certificate and no token"}},
		{name: "key does not match", in: with(func(k *KubeconfigInput) { k.ClientKeyPEM = other }), want: []string{"client certificate and key: tls: private key does not match public key"}},
		{name: "token with newline", in: with(func(k *KubeconfigInput) { k.ClientCertPEM, k.ClientKeyPEM, k.Token = nil, nil, "abc\n" }), want: []string{"token contains white space"}},
		{name: "everything", in: KubeconfigInput{}, want: []string{"cluster name is empty", "user is empty", "server", "certificate authority", "no client certificate and no token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Kubeconfig(tc.in)
			if data != nil {
				t.Errorf("data = %q, want nil", data)
			}
			checkFindings(t, err, tc.want)
		})
	}
}
