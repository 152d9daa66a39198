package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// rebootsView is what 'kiln get reboots' shows: each pool's lock and each node's reboot.
type rebootsView struct {
	Pools []poolRebootView `json:"pools"`
	Nodes []nodeRebootView `json:"nodes"`
}

type poolRebootView struct {
	Pool    string              `json:"pool"`
	Slots   int                 `json:"slots"`
	Holders []rebootlock.Holder `json:"holders"`
}

type nodeRebootView struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// Required says the node needs a reboot; Status is its agent's last decision and why.
	Required   bool   `json:"required"`
	Status     string `json:"status,omitempty"`
	LastReboot string `json:"lastReboot,omitempty"`
	Ready      bool   `json:"ready"`
	Cordoned   bool   `json:"cordoned"`
}

func newGetReboots(g *globals) *cobra.Command {
	var specPath, format, kubeconfig string
	cmd := &cobra.Command{
		Use:   "reboots -f cluster.yaml",
		Short: "Show each pool's reboot lock and each node's pending reboot",
		Long: `reboots reads, through the cluster's API, who holds each pool's reboot lock (the Leases
kiln-reboot-<pool>-<slot> in kube-node-lease) and until when, and for every Node what its
reboot agent (kiln-node reboot) last reported: whether it needs a reboot, what it does about it
and why it waits (window closed, pool unhealthy, lock held by another node, a drain refused by a
PodDisruptionBudget), and when it last rebooted.

It reaches the API as 'kiln apply' does, with a short-lived certificate of kiln's own, or with
--kubeconfig.`,
		Example: `  kiln get reboots -f cluster.yaml
  kiln get reboots -f cluster.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			client, err := g.clusterClient(cmd.Context(), c, specPath, kubeconfig)
			if err != nil {
				return err
			}
			v, err := readReboots(cmd.Context(), client, c, time.Now())
			if err != nil {
				return err
			}
			if format == formatJSON || format == formatYAML {
				return printStructured(g.out, format, v)
			}
			return writeReboots(g, v, time.Now())
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "reach the cluster with this kubeconfig instead of kiln's own certificate")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

// readReboots reads the pools' locks and the Nodes' reboot annotations.
func readReboots(ctx context.Context, client kubernetes.Interface, c *v1alpha1.Cluster, now time.Time) (rebootsView, error) {
	var v rebootsView
	for _, p := range kubecfg.RebootPools(c) {
		sem := rebootlock.Semaphore{Client: client, Namespace: rebootlock.Namespace, Pool: p.Name, Slots: p.Slots, Now: func() time.Time { return now }}
		hs, err := sem.Holders(ctx)
		if err != nil {
			return v, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		v.Pools = append(v.Pools, poolRebootView{Pool: p.Name, Slots: p.Slots, Holders: hs})
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "kiln.dev/cluster=" + c.Metadata.Name})
	if err != nil {
		return v, fmt.Errorf("list the cluster's Nodes: %w", err)
	}
	for _, n := range nodes.Items {
		pool := n.Labels["kiln.dev/pool"]
		if n.Labels["kiln.dev/role"] == v1alpha1.RoleControlPlane {
			pool = rebootlock.ControlPlanePool
		}
		nv := nodeRebootView{Name: n.Name, Pool: pool, Required: n.Annotations[reboot.AnnotationRequired] == "true",
			Status: n.Annotations[reboot.AnnotationStatus], LastReboot: n.Annotations[reboot.AnnotationLast], Cordoned: n.Spec.Unschedulable}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				nv.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		v.Nodes = append(v.Nodes, nv)
	}
	slices.SortFunc(v.Nodes, func(a, b nodeRebootView) int { return strings.Compare(a.Name, b.Name) })
	return v, nil
}

func writeReboots(g *globals, v rebootsView, now time.Time) error {
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tSLOTS\tHELD BY\tUNTIL")
	for _, p := range v.Pools {
		var held, until []string
		for _, h := range p.Holders {
			if h.Identity == "" {
				continue
			}
			held = append(held, h.Identity)
			u := h.Expires.UTC().Format(time.RFC3339)
			if h.Expired {
				u += " (ran out: free for others)"
			} else {
				u += " (in " + h.Expires.Sub(now).Round(time.Second).String() + ")"
			}
			until = append(until, u)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Pool, p.Slots, dash(strings.Join(held, ", ")), dash(strings.Join(until, ", ")))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tPOOL\tREADY\tCORDONED\tREBOOT NEEDED\tLAST REBOOT\tAGENT")
	for _, n := range v.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%t\t%t\t%s\t%s\n", n.Name, n.Pool, n.Ready, n.Cordoned, n.Required, dash(n.LastReboot), dash(n.Status))
	}
	return tw.Flush()
}

// clusterClient is a client of cluster c's API: with kubeconfig when given, else with kiln's own
// short-lived certificate, reached as kiln apply reaches it.
func (g *globals) clusterClient(ctx context.Context, c *v1alpha1.Cluster, specPath, kubeconfig string) (kubernetes.Interface, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return kubernetes.NewForConfig(rc)
	}
	p, err := g.provider(ctx, c, specPath)
	if err != nil {
		return nil, err
	}
	k := &tokenKeeper{g: g, c: c, p: p, log: g.log}
	kc, server, why, err := k.reach(ctx)
	switch {
	case err != nil:
		return nil, err
	case kc == nil:
		return nil, fmt.Errorf("the API of cluster %s does not answer kiln (%s): %s", c.Metadata.Name, dash(server), why)
	}
	return kc.Client, nil
}
