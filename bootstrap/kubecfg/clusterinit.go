package kubecfg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ClusterInitRole names the ClusterRole, the Roles and their bindings that ClusterInitRBAC renders;
// ClusterInitPolicy its ValidatingAdmissionPolicy and that policy's binding (a DNS name).
const (
	ClusterInitRole   = "kiln:cluster-init"
	ClusterInitPolicy = "cluster-init.kiln.dev"
)

// initKind is a kind that a cluster init may apply: its resource and whether it is namespaced.
type initKind struct {
	resource   string
	namespaced bool
}

// initKinds are the kinds kiln's first-boot manifests hold. Kubernetes's RESTMapper would know every
// kind, but only a running API server has one; a kind missing here is an error that names it.
var initKinds = map[schema.GroupKind]initKind{
	{Kind: "Namespace"}: {resource: "namespaces"},
	{Kind: "Secret"}:    {resource: "secrets", namespaced: true},
	{Group: rbacv1.GroupName, Kind: "ClusterRole"}:        {resource: "clusterroles"},
	{Group: rbacv1.GroupName, Kind: "ClusterRoleBinding"}: {resource: "clusterrolebindings"},
	{Group: coordinationv1.GroupName, Kind: "Lease"}:      {resource: "leases", namespaced: true},
}

// builtinNamespaces exist as soon as kube-apiserver starts, before any manifest is applied: a Role
// that lets the cluster init write into a namespace can only be made in one of these.
var builtinNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, "kube-node-lease"}

// initObject is what ClusterInitRBAC reads of one manifest document.
type initObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	RoleRef  *rbacv1.RoleRef     `json:"roleRef"`
	Subjects []rbacv1.Subject    `json:"subjects"`
	Rules    []rbacv1.PolicyRule `json:"rules"`
}

// ClusterInitRBAC renders, as a multi-document YAML stream, what lets the members of group apply the
// objects of manifests, exactly as kiln renders them, and nothing else:
//
//   - ClusterRole and ClusterRoleBinding ClusterInitRole: get, create and patch each cluster-scoped
//     object by its name (server-side apply authorizes a create by the object's name); bind the
//     ClusterRoles that its ClusterRoleBindings reference, by name; and the rules of the ClusterRoles
//     it writes, which RBAC requires a writer to hold (no escalate);
//   - a Role and RoleBinding ClusterInitRole in each namespace that holds namespaced objects: get,
//     create and patch each of them by its name. The namespace must exist when kube-apiserver starts
//     (default, kube-system, kube-public, kube-node-lease);
//   - ValidatingAdmissionPolicy and its binding ClusterInitPolicy: what a member of group creates or
//     changes must say what kiln rendered, and nothing more that was not there before: a
//     ClusterRoleBinding's subjects, a ClusterRole's rules, a Namespace's Pod Security labels. RBAC can
//     say which objects, not what they say: without it the group could add itself to a binding of
//     cluster-admin, hand what it holds to the nodes through kiln:podnet, or relax a namespace's Pod
//     Security level.
//
// Kubernetes has no RBAC that exists before the API server does, so these objects are applied by a
// system:masters credential before the group applies the manifests (see docs/security.md). A kind
// that is not among those kiln's first-boot manifests hold is an error naming it.
func ClusterInitRBAC(group string, manifests ...[]byte) ([]byte, error) {
	if group == "" {
		return nil, errors.New("kubecfg: cluster init RBAC: no group")
	}
	objs, err := initObjects(manifests)
	if err != nil {
		return nil, err
	}

	type target struct{ group, resource string }
	cluster := map[target][]string{}
	namespaced := map[string]map[target][]string{}
	var bind []string
	var held []rbacv1.PolicyRule
	// pinned are what the policy holds the cluster init to, by "Kind/name" (see pinnedKeys).
	pinned := map[string][]string{}
	for _, o := range objs {
		gk := schema.FromAPIVersionAndKind(o.APIVersion, o.Kind).GroupKind()
		k := initKinds[gk]
		tg := target{gk.Group, k.resource}
		if k.namespaced {
			if namespaced[o.Metadata.Namespace] == nil {
				namespaced[o.Metadata.Namespace] = map[target][]string{}
			}
			namespaced[o.Metadata.Namespace][tg] = appendNew(namespaced[o.Metadata.Namespace][tg], o.Metadata.Name)
		} else {
			cluster[tg] = appendNew(cluster[tg], o.Metadata.Name)
		}
		switch o.Kind {
		case "ClusterRoleBinding":
			bind = appendNew(bind, o.RoleRef.Name)
		case "ClusterRole":
			for _, r := range o.Rules {
				if !slices.ContainsFunc(held, func(h rbacv1.PolicyRule) bool { return equalRule(h, r) }) {
					held = append(held, r)
				}
			}
		}
		if keys, ok := pinnedKeys(o); ok {
			pinned[o.Kind+"/"+o.Metadata.Name] = keys
		}
	}
	rules := func(m map[target][]string) []rbacv1.PolicyRule {
		var out []rbacv1.PolicyRule
		for _, tg := range sortedKeys(m, func(a, b target) int {
			return strings.Compare(a.group+"/"+a.resource, b.group+"/"+b.resource)
		}) {
			names := slices.Sorted(slices.Values(m[tg]))
			out = append(out, rbacv1.PolicyRule{APIGroups: []string{tg.group}, Resources: []string{tg.resource},
				ResourceNames: names, Verbs: []string{"create", "get", "patch"}})
		}
		return out
	}

	role := rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInitRole},
		Rules:      rules(cluster),
	}
	if len(bind) > 0 {
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"},
			ResourceNames: slices.Sorted(slices.Values(bind)), Verbs: []string{"bind"}})
	}
	role.Rules = append(role.Rules, held...)
	docs := [][]byte{mustMarshal(role), mustMarshal(clusterRoleBinding(ClusterInitRole, ClusterInitRole, rbacv1.GroupKind, group))}
	for _, ns := range sortedKeys(namespaced, strings.Compare) {
		docs = append(docs,
			mustMarshal(rbacv1.Role{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
				ObjectMeta: metav1.ObjectMeta{Name: ClusterInitRole, Namespace: ns},
				Rules:      rules(namespaced[ns]),
			}),
			mustMarshal(rbacv1.RoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
				ObjectMeta: metav1.ObjectMeta{Name: ClusterInitRole, Namespace: ns},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ClusterInitRole},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
			}))
	}
	if len(pinned) > 0 {
		docs = append(docs, pinningPolicy(group, pinned)...)
	}
	return joinDocuments(docs), nil
}

// initObjects decodes every document of manifests and checks that ClusterInitRBAC can scope it.
func initObjects(manifests [][]byte) ([]initObject, error) {
	var objs []initObject
	var errs []error
	for i, m := range manifests {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m), 4096)
		for doc := 0; ; doc++ {
			var o initObject
			if err := dec.Decode(&o); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("kubecfg: cluster init RBAC: manifest %d, document %d: %w", i, doc, err)
			}
			if o.Kind == "" && o.APIVersion == "" && o.Metadata.Name == "" {
				continue
			}
			where := fmt.Sprintf("manifest %d, document %d (%s %s)", i, doc, o.Kind, o.Metadata.Name)
			gk := schema.FromAPIVersionAndKind(o.APIVersion, o.Kind).GroupKind()
			k, ok := initKinds[gk]
			switch {
			case o.Metadata.Name == "":
				errs = append(errs, fmt.Errorf("%s: no metadata.name", where))
			case !ok:
				errs = append(errs, fmt.Errorf("%s: kind %s is not one a cluster init applies", where, gk))
			case k.namespaced && !slices.Contains(builtinNamespaces, o.Metadata.Namespace):
				errs = append(errs, fmt.Errorf("%s: namespace %q does not exist before the cluster init (want one of %s)",
					where, o.Metadata.Namespace, strings.Join(builtinNamespaces, ", ")))
			case !k.namespaced && o.Metadata.Namespace != "":
				errs = append(errs, fmt.Errorf("%s: a cluster-scoped kind with metadata.namespace %q", where, o.Metadata.Namespace))
			case o.Kind == "ClusterRoleBinding" && (o.RoleRef == nil || o.RoleRef.Kind != "ClusterRole" || o.RoleRef.Name == ""):
				errs = append(errs, fmt.Errorf("%s: want a roleRef to a ClusterRole", where))
			default:
				objs = append(objs, o)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kubecfg: cluster init RBAC: %w", err)
	}
	return objs, nil
}

// podSecurityPrefix starts the labels that set a namespace's Pod Security levels.
const podSecurityPrefix = "pod-security.kubernetes.io/"

// pinnedKeys are what the policy compares of o, each as a string: a ClusterRoleBinding's subjects
// ("Kind:name", "ServiceAccount:ns/name"), a ClusterRole's rules (apiGroups, resources,
// resourceNames, verbs and nonResourceURLs, each joined by "," and the five by ";"), a Namespace's
// Pod Security labels ("key=value"). False for a kind it does not compare. The policy's CEL
// (pinnedCEL) writes the same strings of the object it admits.
func pinnedKeys(o initObject) ([]string, bool) {
	var keys []string
	switch o.Kind {
	case "ClusterRoleBinding":
		for _, sub := range o.Subjects {
			ns := ""
			if sub.Namespace != "" {
				ns = sub.Namespace + "/"
			}
			keys = append(keys, sub.Kind+":"+ns+sub.Name)
		}
	case "ClusterRole":
		for _, r := range o.Rules {
			keys = append(keys, strings.Join([]string{strings.Join(r.APIGroups, ","), strings.Join(r.Resources, ","),
				strings.Join(r.ResourceNames, ","), strings.Join(r.Verbs, ","), strings.Join(r.NonResourceURLs, ",")}, ";"))
		}
	case "Namespace":
		for _, k := range sortedKeys(o.Metadata.Labels, strings.Compare) {
			if strings.HasPrefix(k, podSecurityPrefix) {
				keys = append(keys, k+"="+o.Metadata.Labels[k])
			}
		}
	default:
		return nil, false
	}
	return keys, true
}

// pinnedCEL is the CEL expression of pinnedKeys for the object at root (object, oldObject).
func pinnedCEL(root string) string {
	joined := func(list string) string { return "(has(r." + list + ") ? r." + list + `.join(",") : "")` }
	rules := strings.Join([]string{joined("apiGroups"), joined("resources"), joined("resourceNames"), joined("verbs"), joined("nonResourceURLs")}, ` + ";" + `)
	return root + `.kind == "ClusterRoleBinding" ? ` +
		`(has(` + root + `.subjects) ? ` + root + `.subjects.map(s, s.kind + ":" + (has(s.namespace) ? s.namespace + "/" : "") + s.name) : []) : ` +
		root + `.kind == "ClusterRole" ? (has(` + root + `.rules) ? ` + root + `.rules.map(r, ` + rules + `) : []) : ` +
		`(has(` + root + `.metadata.labels) ? ` + root + `.metadata.labels.filter(k, k.startsWith("` + podSecurityPrefix + `"))` +
		`.map(k, k + "=" + ` + root + `.metadata.labels[k]) : [])`
}

// pinningPolicy renders the ValidatingAdmissionPolicy ClusterInitPolicy and its binding: what a member
// of group creates or updates must be among pinned (by "Kind/name"), say all that pinned holds for it
// (pinnedKeys) and nothing else that the object did not say before (another manager's Pod Security
// label on one of kiln's namespaces stays; one the cluster init adds is refused).
func pinningPolicy(group string, pinned map[string][]string) [][]byte {
	var want []string
	for _, key := range sortedKeys(pinned, strings.Compare) {
		quoted := make([]string, len(pinned[key]))
		for i, s := range pinned[key] {
			quoted[i] = strconv.Quote(s)
		}
		want = append(want, strconv.Quote(key)+": ["+strings.Join(quoted, ", ")+"]")
	}
	fail := admissionv1.Fail
	reason := metav1.StatusReasonForbidden
	rule := func(group string, resources ...string) admissionv1.NamedRuleWithOperations {
		return admissionv1.NamedRuleWithOperations{RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
			Rule:       admissionv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: resources},
		}}
	}
	policy := admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInitPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{
				rule(rbacv1.GroupName, "clusterrolebindings", "clusterroles"),
				rule("", "namespaces"),
			}},
			MatchConditions: []admissionv1.MatchCondition{{
				Name:       "cluster-init",
				Expression: "has(request.userInfo.groups) && " + strconv.Quote(group) + " in request.userInfo.groups",
			}},
			Variables: []admissionv1.Variable{
				{Name: "want", Expression: "{" + strings.Join(want, ", ") + "}"},
				{Name: "key", Expression: `object.kind + "/" + object.metadata.name`},
				{Name: "have", Expression: pinnedCEL("object")},
				{Name: "had", Expression: "oldObject == null ? [] : " + pinnedCEL("oldObject")},
			},
			Validations: []admissionv1.Validation{{
				Expression: "variables.key in variables.want && variables.want[variables.key].all(x, x in variables.have) && " +
					"variables.have.all(x, x in variables.want[variables.key] || x in variables.had)",
				Message: "the cluster init writes only what kiln rendered: these subjects, rules or Pod Security labels are not",
				Reason:  &reason,
			}},
		},
	}
	binding := denyBinding(ClusterInitPolicy)
	return [][]byte{mustMarshal(policy), mustMarshal(binding)}
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func equalRule(a, b rbacv1.PolicyRule) bool {
	return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) &&
		slices.Equal(a.ResourceNames, b.ResourceNames) && slices.Equal(a.Verbs, b.Verbs) &&
		slices.Equal(a.NonResourceURLs, b.NonResourceURLs)
}

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp)
	return keys
}
