// Package cis checks the command-line flags and configuration files of a control-plane node against
// items modelled on the CIS Kubernetes Benchmark (v1.9 numbering): section 1.2 for kube-apiserver,
// 1.3 for kube-controller-manager, 1.4 for kube-scheduler and 2 for etcd. Only the automated items
// that the flags and files decide are here; the benchmark's manual items and those about file
// ownership on a running host are not.
//
// Check is a pure function of the flags and files, so it runs on what kiln renders (kiln audit
// controlplane) as well as on flags read from a running node. A flag that is not set counts with its
// upstream default: --anonymous-auth unset fails, --service-account-lookup unset passes.
package cis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

// Result of one check.
type Result string

// Results.
const (
	Pass Result = "PASS"
	Fail Result = "FAIL"
)

// Components, as Finding.Component names them.
const (
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Etcd              = "etcd"
)

// Finding is the result of one check.
type Finding struct {
	// ID is the CIS Kubernetes Benchmark item the check is modelled on, e.g. "1.2.1".
	ID        string `json:"id"`
	Component string `json:"component"`
	// Check says what is checked, e.g. "--anonymous-auth is false".
	Check  string `json:"check"`
	Result Result `json:"result"`
	// Detail says what was found, when the check fails or the value is worth showing.
	Detail string `json:"detail,omitempty"`
}

// Input is what Check reads: each component's flags ("--name=value"; a bare "--name" means true; the
// last of repeated flags counts), nil for a component that is not checked, and the node's files by
// absolute path, from which the encryption configuration is read.
type Input struct {
	APIServer, ControllerManager, Scheduler, Etcd []string
	Files                                         map[string][]byte
}

// Check runs every check of every component whose flags are given and returns the findings in
// benchmark order.
func Check(in Input) []Finding {
	var fs []Finding
	if in.APIServer != nil {
		fs = append(fs, apiServer(parse(in.APIServer), in.Files)...)
	}
	if in.ControllerManager != nil {
		fs = append(fs, controllerManager(parse(in.ControllerManager))...)
	}
	if in.Scheduler != nil {
		fs = append(fs, scheduler(parse(in.Scheduler))...)
	}
	if in.Etcd != nil {
		fs = append(fs, etcd(parse(in.Etcd), parse(in.APIServer), in.Files)...)
	}
	return fs
}

// Failed counts the findings that failed.
func Failed(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Result == Fail {
			n++
		}
	}
	return n
}

// flags maps a flag's name to its value; a flag that is not set is absent.
type flags map[string]string

func parse(args []string) flags {
	f := flags{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok {
			value = "true"
		}
		f[name] = value
	}
	return f
}

// value returns the flag's value, or def when it is not set.
func (f flags) value(name, def string) string {
	if v, ok := f[name]; ok {
		return v
	}
	return def
}

// list returns a comma-separated flag's values, or def's.
func (f flags) list(name, def string) []string {
	v := f.value(name, def)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// check builds findings for one component.
type check struct {
	component string
	fs        []Finding
}

func (c *check) add(id, what string, ok bool, detail string, args ...any) {
	r := Pass
	if !ok {
		r = Fail
	}
	c.fs = append(c.fs, Finding{ID: id, Component: c.component, Check: what, Result: r, Detail: fmt.Sprintf(detail, args...)})
}

// is checks that a flag has a value; def is its upstream default.
func (c *check) is(id string, f flags, name, want, def string) {
	got := f.value(name, def)
	detail := "--" + name + "=" + got
	if _, set := f[name]; !set {
		detail = "not set, defaults to " + def
	}
	c.add(id, "--"+name+" is "+want, strings.EqualFold(got, want), "%s", detail)
}

// set checks that every named flag has a non-empty value.
func (c *check) set(id string, f flags, names ...string) {
	var missing []string
	for _, n := range names {
		if f[n] == "" {
			missing = append(missing, "--"+n)
		}
	}
	what := "--" + strings.Join(names, " and --") + " set"
	if len(missing) > 0 {
		c.add(id, what, false, "%s not set", strings.Join(missing, ", "))
		return
	}
	c.add(id, what, true, "")
}

// atLeast checks that a numeric flag is set to at least min.
func (c *check) atLeast(id string, f flags, name string, min int) {
	what := fmt.Sprintf("--%s is %d or more", name, min)
	v, ok := f[name]
	if !ok {
		c.add(id, what, false, "not set")
		return
	}
	n, err := strconv.Atoi(v)
	c.add(id, what, err == nil && n >= min, "--%s=%s", name, v)
}

func apiServer(f flags, files map[string][]byte) []Finding {
	c := &check{component: APIServer}
	c.is("1.2.1", f, "anonymous-auth", "false", "true")
	_, token := f["token-auth-file"]
	c.add("1.2.2", "--token-auth-file not set", !token, "%s", ifThen(token, "--token-auth-file="+f["token-auth-file"]))
	c.set("1.2.4", f, "kubelet-client-certificate", "kubelet-client-key")
	c.set("1.2.5", f, "kubelet-certificate-authority")
	modes := f.list("authorization-mode", "AlwaysAllow")
	modeDetail := "--authorization-mode=" + strings.Join(modes, ",")
	if _, ok := f["authorization-mode"]; !ok {
		modeDetail = "not set, defaults to AlwaysAllow"
	}
	c.add("1.2.6", "--authorization-mode does not include AlwaysAllow", !slices.Contains(modes, "AlwaysAllow"), "%s", modeDetail)
	c.add("1.2.7", "--authorization-mode includes Node", slices.Contains(modes, "Node"), "%s", modeDetail)
	c.add("1.2.8", "--authorization-mode includes RBAC", slices.Contains(modes, "RBAC"), "%s", modeDetail)
	enabled, disabled := f.list("enable-admission-plugins", ""), f.list("disable-admission-plugins", "")
	c.add("1.2.10", "admission plugin AlwaysAdmit not enabled", !slices.Contains(enabled, "AlwaysAdmit"), "%s", ifThen(slices.Contains(enabled, "AlwaysAdmit"), "--enable-admission-plugins="+f["enable-admission-plugins"]))
	c.add("1.2.12", "admission plugin ServiceAccount not disabled", !slices.Contains(disabled, "ServiceAccount"), "%s", ifThen(slices.Contains(disabled, "ServiceAccount"), "--disable-admission-plugins="+f["disable-admission-plugins"]))
	c.add("1.2.13", "admission plugin NamespaceLifecycle not disabled", !slices.Contains(disabled, "NamespaceLifecycle"), "%s", ifThen(slices.Contains(disabled, "NamespaceLifecycle"), "--disable-admission-plugins="+f["disable-admission-plugins"]))
	c.add("1.2.14", "admission plugin NodeRestriction enabled", slices.Contains(enabled, "NodeRestriction") && !slices.Contains(disabled, "NodeRestriction"), "--enable-admission-plugins=%s", f["enable-admission-plugins"])
	c.is("1.2.15", f, "profiling", "false", "true")
	c.set("1.2.16", f, "audit-log-path")
	c.atLeast("1.2.17", f, "audit-log-maxage", 30)
	c.atLeast("1.2.18", f, "audit-log-maxbackup", 10)
	c.atLeast("1.2.19", f, "audit-log-maxsize", 100)
	c.is("1.2.21", f, "service-account-lookup", "true", "true")
	c.set("1.2.22", f, "service-account-key-file")
	c.set("1.2.23", f, "etcd-certfile", "etcd-keyfile")
	c.set("1.2.24", f, "tls-cert-file", "tls-private-key-file")
	c.set("1.2.25", f, "client-ca-file")
	c.set("1.2.26", f, "etcd-cafile")
	c.set("1.2.27", f, "encryption-provider-config")
	c.encryption("1.2.28", f["encryption-provider-config"], files)
	c.ciphers("1.2.29", f)
	return c.fs
}

// encryption checks the encryption configuration file: the provider that governs secrets comes first
// and is not identity, with kiln's stricter checks (kubecfg.CheckEncryptionConfig). Key material never
// reaches the detail.
func (c *check) encryption(id, path string, files map[string][]byte) {
	const what = "encryption provider for secrets is not identity, keys sound"
	if path == "" {
		c.add(id, what, false, "no --encryption-provider-config: secrets are stored in plain text")
		return
	}
	data, ok := files[path]
	if !ok {
		c.add(id, what, false, "%s is not among the node's files", path)
		return
	}
	if err := kubecfg.CheckEncryptionConfig(data); err != nil {
		c.add(id, what, false, "%s: %s", path, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	c.add(id, what, true, "%s", path)
}

// strongCiphers are the TLS cipher suites the benchmark counts as strong: TLS 1.3's and ECDHE with
// AEAD ciphers.
var strongCiphers = []string{
	"TLS_AES_128_GCM_SHA256",
	"TLS_AES_256_GCM_SHA384",
	"TLS_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// ciphers checks that only strong cipher suites are accepted, and no TLS version before 1.2.
func (c *check) ciphers(id string, f flags) {
	const what = "only strong TLS cipher suites, TLS 1.2 or later"
	suites := f.list("tls-cipher-suites", "")
	if len(suites) == 0 {
		c.add(id, what, false, "--tls-cipher-suites not set: Go's defaults include CBC suites")
		return
	}
	var weak []string
	for _, s := range suites {
		if !slices.Contains(strongCiphers, s) {
			weak = append(weak, s)
		}
	}
	if len(weak) > 0 {
		c.add(id, what, false, "weak suites: %s", strings.Join(weak, ", "))
		return
	}
	if v := f.value("tls-min-version", "VersionTLS12"); v == "VersionTLS10" || v == "VersionTLS11" {
		c.add(id, what, false, "--tls-min-version=%s", v)
		return
	}
	c.add(id, what, true, "%d suites", len(suites))
}

func controllerManager(f flags) []Finding {
	c := &check{component: ControllerManager}
	c.is("1.3.2", f, "profiling", "false", "true")
	c.is("1.3.3", f, "use-service-account-credentials", "true", "false")
	c.set("1.3.4", f, "service-account-private-key-file")
	c.set("1.3.5", f, "root-ca-file")
	gates := f.list("feature-gates", "")
	off := slices.Contains(gates, "RotateKubeletServerCertificate=false")
	c.add("1.3.6", "RotateKubeletServerCertificate not turned off", !off, "%s", ifThen(off, "--feature-gates="+f["feature-gates"]))
	c.is("1.3.7", f, "bind-address", "127.0.0.1", "0.0.0.0")
	return c.fs
}

func scheduler(f flags) []Finding {
	c := &check{component: Scheduler}
	c.is("1.4.1", f, "profiling", "false", "true")
	c.is("1.4.2", f, "bind-address", "127.0.0.1", "0.0.0.0")
	return c.fs
}

// etcd checks etcd's flags; api are kube-apiserver's (empty if not checked), for the unique-CA item.
func etcd(f, api flags, files map[string][]byte) []Finding {
	c := &check{component: Etcd}
	c.set("2.1", f, "cert-file", "key-file")
	c.is("2.2", f, "client-cert-auth", "true", "false")
	c.is("2.3", f, "auto-tls", "false", "false")
	c.set("2.4", f, "peer-cert-file", "peer-key-file")
	c.is("2.5", f, "peer-client-cert-auth", "true", "false")
	c.is("2.6", f, "peer-auto-tls", "false", "false")
	const what = "etcd trusts its own CA, not the cluster CA"
	etcdCA, clusterCA := f["trusted-ca-file"], api["client-ca-file"]
	switch {
	case etcdCA == "":
		c.add("2.7", what, false, "--trusted-ca-file not set")
	case clusterCA == "":
		c.add("2.7", what, true, "--trusted-ca-file=%s", etcdCA)
	case etcdCA == clusterCA:
		c.add("2.7", what, false, "--trusted-ca-file is kube-apiserver's --client-ca-file, %s", etcdCA)
	case files[etcdCA] != nil && string(files[etcdCA]) == string(files[clusterCA]):
		c.add("2.7", what, false, "%s holds the same certificate as kube-apiserver's --client-ca-file %s", etcdCA, clusterCA)
	default:
		c.add("2.7", what, true, "--trusted-ca-file=%s", etcdCA)
	}
	return c.fs
}

func ifThen(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
