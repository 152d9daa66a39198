package clusterapply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

// FieldManager is the server-side apply field manager of everything kiln applies.
const FieldManager = "kiln"

// Actions of a Change.
const (
	Created    = "created"
	Configured = "configured"
	Unchanged  = "unchanged"
)

// Change is what Apply did to one object.
type Change struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Action is Created, Configured or Unchanged.
	Action string `json:"action"`
}

// String writes the change as kubectl does: "namespace/restricted created".
func (c Change) String() string {
	ns := ""
	if c.Namespace != "" {
		ns = c.Namespace + "/"
	}
	return fmt.Sprintf("%s%s/%s %s", ns, lower(c.Kind), c.Name, c.Action)
}

func lower(s string) string { return strings.ToLower(s) }

// SecureManifests are the objects `kiln cluster secure` applies to a running cluster: the namespaces
// of spec.security.podSecurity.namespaces with their Pod Security labels (kubecfg.NamespaceManifests)
// the RBAC bindings of kubelet TLS bootstrap and of kiln's admin group (kubecfg.BootstrapRBAC), and
// the pools' reboot locks with their RBAC and admission policy (kubecfg.RebootLock), so that a pool
// added after the cluster init gets its Leases.
func SecureManifests(c *v1alpha1.Cluster) ([][]byte, error) {
	ns, err := kubecfg.NamespaceManifests(c.Spec.Security.PodSecurity.Namespaces)
	if err != nil {
		return nil, fmt.Errorf("clusterapply: %w", err)
	}
	objects, policy := kubecfg.RebootLock(kubecfg.RebootPools(c))
	return [][]byte{ns, kubecfg.BootstrapRBAC(), objects, policy}, nil
}

// Apply applies every object of the YAML streams in manifests, in order, with server-side apply as
// FieldManager, forcing ownership of the fields it sets (kiln owns these objects). It is idempotent:
// applying the same objects again changes nothing and reports them Unchanged. An object of a kind
// the cluster does not serve, or one the server rejects, is an error naming it; the objects before it
// stay applied. Object contents (Secret data) never appear in its errors.
func Apply(ctx context.Context, cfg *rest.Config, manifests ...[]byte) ([]Change, error) {
	var objs []*unstructured.Unstructured
	for i, m := range manifests {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m), 4096)
		for doc := 0; ; doc++ {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("clusterapply: manifest %d, document %d: %w", i, doc, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
				return nil, fmt.Errorf("clusterapply: manifest %d, document %d: want apiVersion, kind and metadata.name", i, doc)
			}
			objs = append(objs, &u)
		}
	}
	if len(objs) == 0 {
		return nil, nil
	}

	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clusterapply: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clusterapply: %w", err)
	}

	changes := make([]Change, 0, len(objs))
	for _, u := range objs {
		ch := Change{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
		what := ch.Kind + " " + ch.Name
		if ch.Namespace != "" {
			what = ch.Kind + " " + ch.Namespace + "/" + ch.Name
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return changes, fmt.Errorf("clusterapply: apply %s: %w", what, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if ch.Namespace == "" {
				return changes, fmt.Errorf("clusterapply: apply %s: a namespaced kind without metadata.namespace", what)
			}
			ri = dyn.Resource(m.Resource).Namespace(ch.Namespace)
		}
		cur, err := ri.Get(ctx, ch.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur = nil
		case err != nil:
			return changes, fmt.Errorf("clusterapply: apply %s: get: %w", what, err)
		}
		// Managed fields and status are the server's; an empty creationTimestamp would be a field.
		u.SetManagedFields(nil)
		u.SetCreationTimestamp(metav1.Time{})
		unstructured.RemoveNestedField(u.Object, "status")
		data, err := u.MarshalJSON()
		if err != nil {
			return changes, fmt.Errorf("clusterapply: apply %s: %w", what, err)
		}
		force := true
		got, err := ri.Patch(ctx, ch.Name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
		if err != nil {
			return changes, fmt.Errorf("clusterapply: apply %s: %w", what, err)
		}
		switch {
		case cur == nil:
			ch.Action = Created
		case got.GetResourceVersion() == cur.GetResourceVersion() || sameButStatus(cur, got):
			ch.Action = Unchanged
		default:
			ch.Action = Configured
		}
		changes = append(changes, ch)
	}
	return changes, nil
}

// sameButStatus says whether a and b, two versions of one object, differ in nothing but what the
// server's controllers write beside the apply: the status and the resource version (an admission
// policy's type checking writes its status soon after it is created, and can land between the read
// and the apply).
func sameButStatus(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "status")
		unstructured.RemoveNestedField(c.Object, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
		return c.Object
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}
