package kubecfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	psav1 "k8s.io/pod-security-admission/admission/api/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"sigs.k8s.io/yaml"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// PodSecurityPlugin is the name of the admission plugin that AdmissionConfig configures.
const PodSecurityPlugin = "PodSecurity"

// AdmissionConfig renders the AdmissionConfiguration for kube-apiserver's --admission-control-config-file.
// It configures the PodSecurity plugin with a PodSecurityConfiguration embedded in the same file (one file
// on the node, nothing for a relative path to get wrong; kiln renders no separate PodSecurityConfiguration
// file): defaults enforce, audit and warn at the given levels, each against version "latest", and
// exemptNamespaces (sorted) are exempt.
//
// Every level of defaults must be set: the cluster spec defaults them, and an empty level here would
// silently mean privileged. Namespaces must be DNS labels, each listed once.
func AdmissionConfig(defaults v1alpha1.PodSecurityLevels, exemptNamespaces []string) ([]byte, error) {
	var errs []error
	levels := map[string]string{}
	for _, m := range podSecurityModes(defaults) {
		if m.level == "" {
			errs = append(errs, fmt.Errorf("kubecfg: pod security defaults: %s: %w: level is empty", m.mode, ErrInvalid))
			continue
		}
		if err := checkLevel(m.level); err != nil {
			errs = append(errs, fmt.Errorf("kubecfg: pod security defaults: %s: %w", m.mode, err))
		}
		levels[m.mode] = m.level
	}
	exempt := slices.Clone(exemptNamespaces)
	slices.Sort(exempt)
	for i, ns := range exempt {
		if err := checkNamespaceName(ns); err != nil {
			errs = append(errs, fmt.Errorf("kubecfg: pod security exempt namespace %q: %w", ns, err))
		}
		if i > 0 && exempt[i-1] == ns {
			errs = append(errs, fmt.Errorf("kubecfg: pod security exempt namespace %q: %w: listed twice", ns, ErrInvalid))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	psc := psav1.PodSecurityConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: psav1.SchemeGroupVersion.String(), Kind: "PodSecurityConfiguration"},
		Defaults: psav1.PodSecurityDefaults{
			Enforce:        levels["enforce"],
			EnforceVersion: psaapi.VersionLatest,
			Audit:          levels["audit"],
			AuditVersion:   psaapi.VersionLatest,
			Warn:           levels["warn"],
			WarnVersion:    psaapi.VersionLatest,
		},
		Exemptions: psav1.PodSecurityExemptions{Namespaces: exempt},
	}
	raw, err := json.Marshal(psc)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: pod security configuration: %w", err)
	}
	ac := apiserverv1.AdmissionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: apiserverv1.SchemeGroupVersion.String(), Kind: "AdmissionConfiguration"},
		Plugins: []apiserverv1.AdmissionPluginConfiguration{{
			Name:          PodSecurityPlugin,
			Configuration: &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON},
		}},
	}
	b, err := yaml.Marshal(ac)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: admission config: %w", err)
	}
	return b, nil
}

// NamespaceManifests renders one v1 Namespace per entry of ns, sorted by name, as a multi-document YAML
// stream. Each mode that is set (enforce, audit, warn) becomes the labels
// pod-security.kubernetes.io/<mode>: <level> and pod-security.kubernetes.io/<mode>-version: latest;
// an entry without levels renders a namespace without labels. An empty map renders nothing.
func NamespaceManifests(ns map[string]v1alpha1.PodSecurityLevels) ([]byte, error) {
	names := make([]string, 0, len(ns))
	for name := range ns {
		names = append(names, name)
	}
	slices.Sort(names)

	var errs []error
	docs := make([][]byte, 0, len(names))
	for _, name := range names {
		if err := checkNamespaceName(name); err != nil {
			errs = append(errs, fmt.Errorf("kubecfg: namespace %q: %w", name, err))
		}
		var labels map[string]string
		for _, m := range podSecurityModes(ns[name]) {
			if m.level == "" {
				continue
			}
			if err := checkLevel(m.level); err != nil {
				errs = append(errs, fmt.Errorf("kubecfg: namespace %q: %s: %w", name, m.mode, err))
				continue
			}
			if labels == nil {
				labels = map[string]string{}
			}
			labels[m.levelLabel] = m.level
			labels[m.versionLabel] = psaapi.VersionLatest
		}
		docs = append(docs, mustMarshal(corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return joinDocuments(docs), nil
}

// podSecurityMode is one Pod Security mode with its level and labels.
type podSecurityMode struct {
	mode, level              string
	levelLabel, versionLabel string
}

func podSecurityModes(l v1alpha1.PodSecurityLevels) []podSecurityMode {
	return []podSecurityMode{
		{"enforce", l.Enforce, psaapi.EnforceLevelLabel, psaapi.EnforceVersionLabel},
		{"audit", l.Audit, psaapi.AuditLevelLabel, psaapi.AuditVersionLabel},
		{"warn", l.Warn, psaapi.WarnLevelLabel, psaapi.WarnVersionLabel},
	}
}

func checkLevel(level string) error {
	if _, err := psaapi.ParseLevel(level); err != nil {
		return fmt.Errorf("%w: level %q (want %s, %s or %s)", ErrInvalid, level,
			v1alpha1.LevelPrivileged, v1alpha1.LevelBaseline, v1alpha1.LevelRestricted)
	}
	return nil
}

func checkNamespaceName(name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return fmt.Errorf("%w: not a DNS label: %s", ErrInvalid, strings.Join(msgs, "; "))
	}
	return nil
}
