package kubecfg

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cliflag "k8s.io/component-base/cli/flag"
)

// Flags that kiln passes and that k8s.io/apiserver does not define: they belong to the components
// themselves in k8s.io/kubernetes, which cannot be imported. Checked by hand against kubernetes v1.37:
//   - kube-apiserver: pkg/kubeapiserver/options/authentication.go (anonymous-auth, enable-bootstrap-token-auth,
//     service-account-issuer, service-account-key-file), pkg/kubeapiserver/options/authorization.go
//     (authorization-mode), pkg/controlplane/apiserver/options/options.go (proxy-client-cert-file,
//     proxy-client-key-file, service-account-signing-key-file), cmd/kube-apiserver/app/options/options.go
//     (allow-privileged, kubelet-*, service-cluster-ip-range);
//   - kube-controller-manager: cmd/kube-controller-manager/app/options (its controllers' flags, kubeconfig,
//     leader-elect from component-base, profiling from k8s.io/controller-manager's DebuggingOptions);
//   - kube-scheduler: cmd/kube-scheduler/app/options/deprecated.go (kubeconfig, profiling; deprecated, still
//     honoured without --config) and leader-elect from component-base.
var componentFlags = map[string][]string{
	"kube-apiserver": {
		"allow-privileged", "anonymous-auth", "authorization-mode", "enable-bootstrap-token-auth",
		"kubelet-certificate-authority", "kubelet-client-certificate", "kubelet-client-key",
		"kubelet-preferred-address-types", "proxy-client-cert-file", "proxy-client-key-file",
		"service-account-issuer", "service-account-key-file", "service-account-signing-key-file",
		"service-cluster-ip-range",
	},
	"kube-controller-manager": {
		"allocate-node-cidrs", "cluster-cidr", "cluster-name", "cluster-signing-cert-file",
		"cluster-signing-key-file", "controllers", "kubeconfig", "leader-elect",
		"leader-elect-lease-duration", "leader-elect-renew-deadline", "leader-elect-retry-period", "profiling", "root-ca-file",
		"service-account-private-key-file", "service-cluster-ip-range", "use-service-account-credentials",
	},
	"kube-scheduler": {"kubeconfig", "leader-elect", "leader-elect-lease-duration", "leader-elect-renew-deadline",
		"leader-elect-retry-period", "profiling"},
}

// genericOptions are the option types of k8s.io/apiserver/pkg/server/options whose flags each component
// registers.
var genericOptions = map[string][]string{
	"kube-apiserver": {
		"ServerRunOptions", "EtcdOptions", "SecureServingOptions", "AuditOptions", "AuditLogOptions",
		"FeatureOptions", "AdmissionOptions", "ClientCertAuthenticationOptions", "RequestHeaderAuthenticationOptions",
	},
	"kube-controller-manager": {
		"SecureServingOptions", "DelegatingAuthenticationOptions", "DelegatingAuthorizationOptions",
		"ClientCertAuthenticationOptions", "RequestHeaderAuthenticationOptions",
	},
	"kube-scheduler": {
		"SecureServingOptions", "DelegatingAuthenticationOptions", "DelegatingAuthorizationOptions",
		"ClientCertAuthenticationOptions", "RequestHeaderAuthenticationOptions",
	},
}

// upstreamFlags reads the flag names that each option type of k8s.io/apiserver/pkg/server/options
// registers in its AddFlags (or AddUniversalFlags) method, from the source of the version in go.mod.
func upstreamFlags(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/apiserver").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/apiserver: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "pkg", "server", "options")
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", dir, err)
	}
	flags := map[string][]string{}
	for _, pkg := range pkgs {
		for name, file := range pkg.Files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			for _, decl := range file.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Recv == nil || (fn.Name.Name != "AddFlags" && fn.Name.Name != "AddUniversalFlags") {
					continue
				}
				recv := fn.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				id, ok := recv.(*ast.Ident)
				if !ok {
					continue
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					// fs.XxxVar(&v, "name", ...), fs.Var(v, "name", ...) and fs.Xxx("name", ...)
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					sel, ok := call.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "fs" {
						return true
					}
					for _, arg := range call.Args[:min(2, len(call.Args))] {
						if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, err := strconv.Unquote(lit.Value); err == nil {
								flags[id.Name] = append(flags[id.Name], s)
							}
							break
						}
					}
					return true
				})
			}
		}
	}
	return flags
}

// knownFlags is the set of flag names that component accepts, as far as this test knows them.
func knownFlags(t *testing.T, component string, upstream map[string][]string) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, typ := range genericOptions[component] {
		if len(upstream[typ]) == 0 {
			t.Fatalf("no flags found for k8s.io/apiserver options type %s", typ)
		}
		for _, f := range upstream[typ] {
			known[f] = true
		}
	}
	for _, f := range componentFlags[component] {
		known[f] = true
	}
	return known
}

// checkFlags checks the form, order and names of one component's flags.
func checkFlags(t *testing.T, component string, flags []string, upstream map[string][]string) map[string]string {
	t.Helper()
	known := knownFlags(t, component, upstream)
	var names []string
	values := map[string]string{}
	for _, f := range flags {
		name, value, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok || !strings.HasPrefix(f, "--") || value == "" {
			t.Errorf("%s flag %q: want --name=value", component, f)
			continue
		}
		if _, dup := values[name]; dup {
			t.Errorf("%s flag --%s given twice", component, name)
		}
		values[name] = value
		names = append(names, name)
		if !known[name] {
			t.Errorf("%s has no flag --%s", component, name)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("%s flags are not sorted by name: %v", component, names)
	}
	if v, ok := values["tls-cipher-suites"]; ok {
		if _, err := cliflag.TLSCipherSuites(strings.Split(v, ",")); err != nil {
			t.Errorf("%s --tls-cipher-suites: %v", component, err)
		}
		for _, s := range strings.Split(v, ",") {
			if slices.Contains(cliflag.InsecureTLSCipherNames(), s) {
				t.Errorf("%s --tls-cipher-suites has insecure %s", component, s)
			}
		}
	}
	if v, ok := values["tls-min-version"]; ok {
		if _, err := cliflag.TLSVersion(v); err != nil {
			t.Errorf("%s --tls-min-version: %v", component, err)
		}
	}
	return values
}

func wantFlags(t *testing.T, component string, got, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s --%s = %q, want %q", component, name, got[name], v)
		}
	}
}

var testAPIServerInput = APIServerInput{
	AuditEnabled:     true,
	ServiceCIDR:      "10.96.0.0/12",
	EtcdServers:      []string{"https://10.0.0.11:2379", "https://10.0.0.12:2379"},
	AdvertiseAddress: "10.0.0.11",
}

func TestAPIServerFlags(t *testing.T) {
	upstream := upstreamFlags(t)
	if err := testAPIServerInput.Validate(); err != nil {
		t.Fatal(err)
	}
	flags := APIServerFlags(testAPIServerInput)
	golden(t, "kube-apiserver.flags", []byte(strings.Join(flags, "\n")+"\n"))
	got := checkFlags(t, "kube-apiserver", flags, upstream)
	wantFlags(t, "kube-apiserver", got, map[string]string{
		"anonymous-auth":                              "false",
		"authorization-mode":                          "Node,RBAC",
		"enable-admission-plugins":                    "NodeRestriction",
		"admission-control-config-file":               "/etc/kubernetes/admission-config.yaml",
		"encryption-provider-config":                  "/etc/kubernetes/encryption-config.yaml",
		"encryption-provider-config-automatic-reload": "false",
		"enable-bootstrap-token-auth":                 "true",
		"client-ca-file":                              "/etc/kubernetes/pki/ca.crt",
		"tls-cert-file":                               "/etc/kubernetes/pki/apiserver.crt",
		"tls-private-key-file":                        "/etc/kubernetes/pki/apiserver.key",
		"tls-min-version":                             "VersionTLS12",
		"kubelet-client-certificate":                  "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
		"kubelet-client-key":                          "/etc/kubernetes/pki/apiserver-kubelet-client.key",
		"kubelet-certificate-authority":               "/etc/kubernetes/pki/ca.crt",
		"etcd-cafile":                                 "/etc/kubernetes/pki/etcd/ca.crt",
		"etcd-certfile":                               "/etc/kubernetes/pki/apiserver-etcd-client.crt",
		"etcd-keyfile":                                "/etc/kubernetes/pki/apiserver-etcd-client.key",
		"etcd-servers":                                "https://10.0.0.11:2379,https://10.0.0.12:2379",
		"service-account-key-file":                    "/etc/kubernetes/pki/sa.pub",
		"service-account-signing-key-file":            "/etc/kubernetes/pki/sa.key",
		"service-account-issuer":                      "https://kubernetes.default.svc.cluster.local",
		"service-cluster-ip-range":                    "10.96.0.0/12",
		"secure-port":                                 "6443",
		"profiling":                                   "false",
		"requestheader-client-ca-file":                "/etc/kubernetes/pki/front-proxy-ca.crt",
		"requestheader-allowed-names":                 "front-proxy-client",
		"proxy-client-cert-file":                      "/etc/kubernetes/pki/front-proxy-client.crt",
		"proxy-client-key-file":                       "/etc/kubernetes/pki/front-proxy-client.key",
		"audit-policy-file":                           "/etc/kubernetes/audit-policy.yaml",
		"audit-log-path":                              "/var/log/kubernetes/audit/audit.log",
		"audit-log-maxage":                            "30",
		"audit-log-maxbackup":                         "10",
		"audit-log-maxsize":                           "100",
		"allow-privileged":                            "true",
		"advertise-address":                           "10.0.0.11",
	})
	if !strings.Contains(got["enable-admission-plugins"], "NodeRestriction") {
		t.Error("NodeRestriction is not enabled")
	}
}

func TestAPIServerFlagsOptional(t *testing.T) {
	in := testAPIServerInput
	in.AuditEnabled, in.AdvertiseAddress = false, ""
	in.PKIDir, in.SecurePort, in.ClusterDomain = "/srv/pki", 8443, "example.internal"
	got := checkFlags(t, "kube-apiserver", APIServerFlags(in), upstreamFlags(t))
	for name := range got {
		if strings.HasPrefix(name, "audit-") || name == "advertise-address" {
			t.Errorf("--%s is set", name)
		}
	}
	wantFlags(t, "kube-apiserver", got, map[string]string{
		"client-ca-file":         "/srv/pki/ca.crt",
		"etcd-cafile":            "/srv/pki/etcd/ca.crt",
		"secure-port":            "8443",
		"service-account-issuer": "https://kubernetes.default.svc.example.internal",
	})
	in.ServiceAccountIssuer = "https://api.demo.kiln.internal:6443"
	if got := checkFlags(t, "kube-apiserver", APIServerFlags(in), upstreamFlags(t)); got["service-account-issuer"] != in.ServiceAccountIssuer {
		t.Errorf("--service-account-issuer = %q, want %q", got["service-account-issuer"], in.ServiceAccountIssuer)
	}
}

func TestAPIServerInputValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*APIServerInput)
		want []string
	}{
		{name: "no service cidr", edit: func(in *APIServerInput) { in.ServiceCIDR = "" }, want: []string{"service cidr"}},
		{name: "host bits", edit: func(in *APIServerInput) { in.ServiceCIDR = "10.96.0.1/12" }, want: []string{"host bits set (want 10.96.0.0/12)"}},
		{name: "no etcd", edit: func(in *APIServerInput) { in.EtcdServers = nil }, want: []string{"etcd servers: invalid: none"}},
		{name: "plain etcd", edit: func(in *APIServerInput) { in.EtcdServers = []string{"http://127.0.0.1:2379"} }, want: []string{`etcd server "http://127.0.0.1:2379"`}},
		{name: "bad advertise address", edit: func(in *APIServerInput) { in.AdvertiseAddress = "api.local" }, want: []string{`advertise address "api.local"`}},
		{name: "bad port", edit: func(in *APIServerInput) { in.SecurePort = 70000 }, want: []string{"secure port 70000"}},
		{name: "relative path", edit: func(in *APIServerInput) { in.AuditPolicyFile = "audit.yaml" }, want: []string{`audit policy file "audit.yaml"`}},
		{name: "bad domain", edit: func(in *APIServerInput) { in.ClusterDomain = "Cluster_Local" }, want: []string{`cluster domain "Cluster_Local"`}},
		{name: "plain issuer", edit: func(in *APIServerInput) { in.ServiceAccountIssuer = "kubernetes.default.svc" }, want: []string{`service account issuer "kubernetes.default.svc": invalid: want an https URL`}},
		{
			name: "everything",
			edit: func(in *APIServerInput) { *in = APIServerInput{PKIDir: "pki", SecurePort: -1} },
			want: []string{"pki dir", "service cidr", "etcd servers", "secure port"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testAPIServerInput
			tc.edit(&in)
			checkFindings(t, in.Validate(), tc.want)
		})
	}
}

var testControllerManagerInput = ControllerManagerInput{
	ClusterName: "demo",
	PodCIDR:     "10.244.0.0/16",
	ServiceCIDR: "10.96.0.0/12",
}

func TestControllerManagerFlags(t *testing.T) {
	if err := testControllerManagerInput.Validate(); err != nil {
		t.Fatal(err)
	}
	flags := ControllerManagerFlags(testControllerManagerInput)
	golden(t, "kube-controller-manager.flags", []byte(strings.Join(flags, "\n")+"\n"))
	got := checkFlags(t, "kube-controller-manager", flags, upstreamFlags(t))
	wantFlags(t, "kube-controller-manager", got, map[string]string{
		"use-service-account-credentials":  "true",
		"cluster-signing-cert-file":        "/etc/kubernetes/pki/ca.crt",
		"cluster-signing-key-file":         "/etc/kubernetes/pki/ca.key",
		"root-ca-file":                     "/etc/kubernetes/pki/ca.crt",
		"service-account-private-key-file": "/etc/kubernetes/pki/sa.key",
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kubeconfig":                       "/etc/kubernetes/controller-manager.conf",
		"authentication-kubeconfig":        "/etc/kubernetes/controller-manager.conf",
		"authorization-kubeconfig":         "/etc/kubernetes/controller-manager.conf",
		"profiling":                        "false",
		"bind-address":                     "127.0.0.1",
		"cluster-cidr":                     "10.244.0.0/16",
		"allocate-node-cidrs":              "true",
		"service-cluster-ip-range":         "10.96.0.0/12",
		"cluster-name":                     "demo",
	})
	in := testControllerManagerInput
	in.ClusterName = ""
	if got := checkFlags(t, "kube-controller-manager", ControllerManagerFlags(in), upstreamFlags(t)); got["cluster-name"] != "" {
		t.Errorf("--cluster-name = %q without a cluster name", got["cluster-name"])
	}
}

func TestControllerManagerInputValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*ControllerManagerInput)
		want []string
	}{
		{name: "overlap", edit: func(in *ControllerManagerInput) { in.PodCIDR = "10.96.0.0/16" }, want: []string{"pod cidr 10.96.0.0/16 and service cidr 10.96.0.0/12: invalid: overlap"}},
		{name: "no pod cidr", edit: func(in *ControllerManagerInput) { in.PodCIDR = "" }, want: []string{"pod cidr"}},
		{name: "bad cluster name", edit: func(in *ControllerManagerInput) { in.ClusterName = "Demo Cluster" }, want: []string{`cluster name "Demo Cluster"`}},
		{name: "relative kubeconfig", edit: func(in *ControllerManagerInput) { in.KubeconfigFile = "cm.conf" }, want: []string{`kubeconfig file "cm.conf"`}},
		{name: "renew deadline not under lease", edit: func(in *ControllerManagerInput) {
			in.LeaderElection = LeaderElection{LeaseDuration: 10 * time.Second, RenewDeadline: 10 * time.Second}
		}, want: []string{"leader election renew deadline 10s: invalid: must be shorter than the lease duration 10s"}},
		{name: "negative retry", edit: func(in *ControllerManagerInput) { in.LeaderElection.RetryPeriod = -time.Second },
			want: []string{"leader election retry period -1s: invalid: negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testControllerManagerInput
			tc.edit(&in)
			checkFindings(t, in.Validate(), tc.want)
		})
	}
}

func TestSchedulerFlags(t *testing.T) {
	flags := SchedulerFlags(SchedulerInput{})
	golden(t, "kube-scheduler.flags", []byte(strings.Join(flags, "\n")+"\n"))
	got := checkFlags(t, "kube-scheduler", flags, upstreamFlags(t))
	wantFlags(t, "kube-scheduler", got, map[string]string{
		"kubeconfig":                "/etc/kubernetes/scheduler.conf",
		"authentication-kubeconfig": "/etc/kubernetes/scheduler.conf",
		"authorization-kubeconfig":  "/etc/kubernetes/scheduler.conf",
		"bind-address":              "127.0.0.1",
		"profiling":                 "false",
	})
}

// TestLeaderElectionFlags: slow machines get the three timings on both electing components; the zero
// value adds none, so Kubernetes' defaults hold.
func TestLeaderElectionFlags(t *testing.T) {
	upstream := upstreamFlags(t)
	want := map[string]string{
		"leader-elect-lease-duration": "1m0s",
		"leader-elect-renew-deadline": "40s",
		"leader-elect-retry-period":   "10s",
	}
	cm := testControllerManagerInput
	cm.LeaderElection = SlowMachineLeaderElection
	if err := cm.Validate(); err != nil {
		t.Fatal(err)
	}
	wantFlags(t, "kube-controller-manager", checkFlags(t, "kube-controller-manager", ControllerManagerFlags(cm), upstream), want)
	wantFlags(t, "kube-scheduler", checkFlags(t, "kube-scheduler", SchedulerFlags(SchedulerInput{LeaderElection: SlowMachineLeaderElection}), upstream), want)
	for _, flags := range [][]string{ControllerManagerFlags(testControllerManagerInput), SchedulerFlags(SchedulerInput{})} {
		for _, f := range flags {
			if strings.HasPrefix(f, "--leader-elect-") {
				t.Errorf("%s without a LeaderElection", f)
			}
		}
	}
}

func TestUpstreamFlagsFound(t *testing.T) {
	// The source reader must find what is known to be there and nothing that is not, or every check
	// above is void.
	up := upstreamFlags(t)
	known := knownFlags(t, "kube-apiserver", up)
	for _, typo := range []string{"tls-min-verison", "anonymous-auth-enabled", "encryption-provider-config-reload", "audit-log-max-age"} {
		if known[typo] {
			t.Errorf("--%s counts as a kube-apiserver flag", typo)
		}
	}
	if knownFlags(t, "kube-scheduler", up)["etcd-servers"] {
		t.Error("--etcd-servers counts as a kube-scheduler flag")
	}
	for typ, name := range map[string]string{
		"EtcdOptions":          "encryption-provider-config-automatic-reload",
		"SecureServingOptions": "tls-cipher-suites",
		"AuditLogOptions":      "audit-log-maxbackup",
		"AdmissionOptions":     "admission-control-config-file",
	} {
		if !slices.Contains(up[typ], name) {
			t.Errorf("%s flags %v lack %s", typ, up[typ], name)
		}
	}
}
