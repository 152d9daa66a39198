package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/nodeagent/podnet"
)

// DefaultKubeconfig is the kubelet's kubeconfig, written by its TLS bootstrap: the agent acts with
// the node's own identity.
const DefaultKubeconfig = "/etc/kubernetes/kubelet.conf"

// kubeconfigPoll is how often the agent looks for the kubelet's kubeconfig until it appears.
const kubeconfigPoll = 2 * time.Second

type podnetOptions struct {
	kubeconfig, nodeName, cniDir, iface, clusterCIDR string
	resync                                           time.Duration
}

func newPodnet(g *globals) *cobra.Command {
	o := podnetOptions{}
	cmd := &cobra.Command{
		Use:   "podnet --cluster-cidr CIDR",
		Short: "Keep this node's pod network: its CNI config and routes to the other nodes' pods",
		Long: `podnet keeps this node's pod network until it is stopped. It waits for the kubelet's kubeconfig
(written by the kubelet's TLS bootstrap), then watches the cluster's Nodes with the node's own
credential and, on every change and every --resync:

  - waits until this node's Node has a spec.podCIDR (allocated by kube-controller-manager);
  - writes the CNI config 10-kiln.conflist into --cni-dir (bridge cni0, host-local over the podCIDR,
    portmap): the kubelet reports the node's network ready only once it exists;
  - loads the nftables table inet kiln_podnet, which masquerades what the node's pods send outside
    --cluster-cidr;
  - routes every other Node's podCIDR through its InternalIP on the interface that holds this
    node's InternalIP (or --interface), with route protocol 107, and removes the routes it made for
    Nodes that are gone. Routes of other protocols are never touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			clusterCIDR, err := netip.ParsePrefix(o.clusterCIDR)
			if err != nil || clusterCIDR != clusterCIDR.Masked() {
				return fmt.Errorf("--cluster-cidr %q: want the cluster's pod range (spec.network.podCIDR), e.g. 10.244.0.0/16", o.clusterCIDR)
			}
			if o.nodeName == "" {
				if o.nodeName, err = hostName(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			client, err := nodeClient(ctx, o.kubeconfig, func(msg string) { log.Info("waiting", "node", o.nodeName, "why", msg) })
			if err != nil || ctx.Err() != nil {
				return err
			}
			h, err := netlink.NewHandle()
			if err != nil {
				return fmt.Errorf("podnet: netlink: %w", err)
			}
			defer h.Close()
			agent := &podnet.Agent{
				NodeName:    o.nodeName,
				ClusterCIDR: clusterCIDR,
				CNIDir:      o.cniDir,
				Interface:   o.iface,
				Routes:      podnet.NewRouteTable(h),
				Log:         log,
				Resync:      o.resync,
			}
			return agent.Run(ctx, client)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", DefaultKubeconfig, "kubeconfig of the node's own credential (the kubelet's)")
	f.StringVar(&o.nodeName, "node-name", "", "name of this node's Node (default: the hostname, lower-cased, as the kubelet names it)")
	f.StringVar(&o.cniDir, "cni-dir", podnet.DefaultCNIDir, "directory of CNI configs that containerd reads")
	f.StringVar(&o.iface, "interface", "", "interface of the nodes' private network (default: the one holding the node's InternalIP)")
	f.StringVar(&o.clusterCIDR, "cluster-cidr", "", "the cluster's pod range (spec.network.podCIDR, kube-controller-manager's --cluster-cidr); required")
	f.DurationVar(&o.resync, "resync", podnet.DefaultResync, "how often to sync when nothing changes")
	_ = cmd.MarkFlagRequired("cluster-cidr")
	_ = cmd.MarkFlagDirname("cni-dir")
	_ = cmd.MarkFlagFilename("kubeconfig")
	return cmd
}

// nodeClient waits until kubeconfig exists and can be used (the kubelet writes its client
// certificate, which the kubeconfig names, around the same time), saying what it waits for through
// waiting, and returns a client with it. It returns a nil client and no error when ctx ends first.
func nodeClient(ctx context.Context, kubeconfig string, waiting func(string)) (kubernetes.Interface, error) {
	said := ""
	say := func(why string) {
		if why != said {
			waiting(why)
			said = why
		}
	}
	var rc *rest.Config
	err := wait.PollUntilContextCancel(ctx, kubeconfigPoll, true, func(context.Context) (bool, error) {
		_, err := os.Stat(kubeconfig)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			say(fmt.Sprintf("no kubeconfig at %s yet (the kubelet writes it after its TLS bootstrap)", kubeconfig))
			return false, nil
		case err != nil:
			return false, fmt.Errorf("kubeconfig: %w", err)
		}
		if rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			// Most often the client certificate it names is not written yet.
			say(fmt.Sprintf("kubeconfig %s is not usable yet: %v", kubeconfig, err))
			return false, nil
		}
		return true, nil
	})
	if ctx.Err() != nil {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "kiln-node/" + Version + " podnet"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return client, nil
}

// hostName is the kubelet's default node name: the hostname, lower-cased.
func hostName() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("node name: %w (set --node-name)", err)
	}
	return strings.ToLower(strings.TrimSpace(h)), nil
}
