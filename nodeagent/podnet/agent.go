package podnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// DefaultResync is how often the agent syncs when nothing changes: a route or a CNI config removed
// by hand comes back within it.
const DefaultResync = 30 * time.Second

// Agent keeps one node's pod network: its CNI config, its masquerading and its routes to the other
// nodes' pods. Set the fields, then Run it.
type Agent struct {
	// NodeName is the name of this node's Node. Required.
	NodeName string
	// ClusterCIDR is the cluster's pod range (spec.network.podCIDR, kube-controller-manager's
	// --cluster-cidr): what pods send there is never masqueraded. Required.
	ClusterCIDR netip.Prefix
	// CNIDir is the CNI config directory. Defaults to DefaultCNIDir.
	CNIDir string
	// Interface names the interface of the node's private network; empty: the one that holds the
	// node's InternalIP.
	Interface string
	// Routes changes the routing table. Required.
	Routes *RouteTable
	// Nft loads the masquerading.
	Nft Nft
	// Log receives what the agent does and why it waits. Defaults to slog.Default().
	Log *slog.Logger
	// Resync is how often the agent syncs when nothing changes. Defaults to DefaultResync.
	Resync time.Duration

	lastSkipped string // the skips last logged, so that an unchanged list is logged once
}

// Status is what one Sync found and did.
type Status struct {
	// Waiting says why the node cannot be set up yet (not registered, no podCIDR, no InternalIP);
	// empty when it is set up.
	Waiting string
	// PodCIDR is the node's pod range, when it has one.
	PodCIDR netip.Prefix
	// WroteConflist says whether the CNI config was written (it was missing or different).
	WroteConflist bool
	// Added and Deleted are the routes this sync changed.
	Added, Deleted []Route
	// Skipped are the Nodes that get no route, and why.
	Skipped []Skip
}

func (a *Agent) check() error {
	var errs []error
	if a.NodeName == "" {
		errs = append(errs, errors.New("podnet: no node name"))
	}
	if !a.ClusterCIDR.IsValid() || a.ClusterCIDR != a.ClusterCIDR.Masked() {
		errs = append(errs, fmt.Errorf("podnet: cluster cidr %q: %w: want the cluster's pod range without host bits", a.ClusterCIDR, ErrInvalid))
	}
	if a.Routes == nil {
		errs = append(errs, errors.New("podnet: no route table"))
	}
	return errors.Join(errs...)
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// Sync brings the node's pod network in line with nodes (every Node of the cluster): it loads the
// masquerading for the node's podCIDR, writes the CNI config for it and applies the route plan
// (PlanRoutes). A node that cannot be set up yet is not an error: Status.Waiting says why. It goes
// on after a failed step and returns the errors of all.
func (a *Agent) Sync(ctx context.Context, nodes []*corev1.Node) (Status, error) {
	if err := a.check(); err != nil {
		return Status{}, err
	}
	var st Status
	var self *NodeInfo
	var infos []NodeInfo
	for _, n := range nodes {
		info, err := NodeInfoFrom(n)
		if n.Name == a.NodeName {
			if err != nil {
				return st, err
			}
			self = &info
		} else if err != nil {
			st.Skipped = append(st.Skipped, Skip{Node: n.Name, Reason: err.Error()})
		}
		infos = append(infos, info)
	}
	switch {
	case self == nil:
		st.Waiting = fmt.Sprintf("node %s is not registered yet (the kubelet registers it)", a.NodeName)
		return st, nil
	case !self.PodCIDR.IsValid():
		st.Waiting = fmt.Sprintf("node %s has no spec.podCIDR yet (kube-controller-manager allocates it from %s with --allocate-node-cidrs)", a.NodeName, a.ClusterCIDR)
		return st, nil
	}
	st.PodCIDR = self.PodCIDR

	var errs []error
	dir := a.CNIDir
	if dir == "" {
		dir = DefaultCNIDir
	}
	// The masquerading first: the CNI config is what tells the kubelet that the network is ready,
	// so the pods it then starts find their way out already in place.
	if rules, err := Masquerade(self.PodCIDR, a.ClusterCIDR); err != nil {
		errs = append(errs, fmt.Errorf("node %s: %w", a.NodeName, err))
	} else if err := a.Nft.Load(ctx, rules); err != nil {
		errs = append(errs, err)
	}
	if conf, err := Conflist(self.PodCIDR); err != nil {
		errs = append(errs, fmt.Errorf("node %s: %w", a.NodeName, err))
	} else if st.WroteConflist, err = WriteConflist(dir, conf); err != nil {
		errs = append(errs, err)
	}

	if !self.InternalIP.IsValid() && a.Interface == "" {
		st.Waiting = fmt.Sprintf("node %s has no InternalIP of the family of %s in status.addresses yet (the kubelet reports it); routes wait for it", a.NodeName, self.PodCIDR)
		return st, errors.Join(errs...)
	}
	link, err := a.Routes.Interface(a.Interface, self.InternalIP)
	if err != nil {
		return st, errors.Join(append(errs, err)...)
	}
	current, err := a.Routes.List(self.PodCIDR.Addr())
	if err != nil {
		return st, errors.Join(append(errs, err)...)
	}
	var skipped []Skip
	_, skipped = WantedRoutes(*self, infos)
	st.Skipped = append(st.Skipped, skipped...)
	st.Added, st.Deleted = PlanRoutes(*self, infos, current)
	if err := a.Routes.Apply(link, st.Added, st.Deleted); err != nil {
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// Run watches the cluster's Nodes through client and syncs on every change and every Resync until
// ctx ends; a failed sync is retried with backoff. It logs what each sync changes and, while the
// node cannot be set up, why it waits. It returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context, client kubernetes.Interface) error {
	if err := a.check(); err != nil {
		return err
	}
	resync := a.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	log := a.log()
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	informer := nodes.Informer()
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, resync),
		),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podnet"})
	defer queue.ShutDown()
	// One key: every event asks for one sync of the whole node; events that come while a sync runs
	// fold into the next.
	const key = "sync"
	enqueue := func(any) { queue.Add(key) }
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("podnet: watch nodes: %w", err)
	}
	// A list or watch that fails (the API away, the credential refused) is retried by the informer
	// with backoff; say so, and say what is needed when it is refused.
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			log.Error("cannot list and watch Nodes: the node's credential needs the ClusterRole kiln:podnet bound to group system:nodes (kubecfg.PodNetworkRBAC, applied by the cluster init)", "err", err)
			return
		}
		log.Warn("list or watch of Nodes failed; retrying", "err", err)
	}); err != nil {
		return fmt.Errorf("podnet: watch nodes: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	log.Info("watching nodes", "node", a.NodeName, "clusterCIDR", a.ClusterCIDR.String(), "resync", resync.String())
	if !cache.WaitForNamedCacheSync("podnet", ctx.Done(), informer.HasSynced) {
		return nil
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	queue.Add(key)
	lastWaiting := ""
	for {
		k, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		list, err := nodes.Lister().List(labels.Everything())
		var st Status
		if err == nil {
			st, err = a.Sync(ctx, list)
		}
		a.report(st, lastWaiting)
		lastWaiting = st.Waiting
		if err != nil && ctx.Err() == nil {
			log.Error("sync failed; retrying", "node", a.NodeName, "err", err, "retry", queue.NumRequeues(k)+1)
			queue.AddRateLimited(k)
		} else {
			queue.Forget(k)
			queue.AddAfter(k, resync)
		}
		queue.Done(k)
	}
}

// report logs what a sync did: every change, the waiting reason (again on every sync, so a node
// that waits long says so), the skipped Nodes when they change.
func (a *Agent) report(st Status, lastWaiting string) {
	log := a.log()
	if st.Waiting != "" {
		log.Info("waiting", "node", a.NodeName, "why", st.Waiting)
	} else if lastWaiting != "" {
		log.Info("done waiting", "node", a.NodeName, "podCIDR", st.PodCIDR.String())
	}
	if st.WroteConflist {
		dir := a.CNIDir
		if dir == "" {
			dir = DefaultCNIDir
		}
		log.Info("wrote the CNI config", "file", dir+"/"+ConflistFile, "podCIDR", st.PodCIDR.String())
		if earlier, err := EarlierConfigs(dir); err != nil {
			log.Warn("cannot list the CNI config directory", "err", err)
		} else if len(earlier) > 0 {
			log.Warn("CNI configs sort before kiln's and shadow it (containerd uses the first)", "files", strings.Join(earlier, ","))
		}
	}
	for _, r := range st.Deleted {
		log.Info("deleted route", "route", r.String())
	}
	for _, r := range st.Added {
		log.Info("added route", "route", r.String())
	}
	var s []string
	for _, k := range st.Skipped {
		s = append(s, k.Node+": "+k.Reason)
	}
	slices.Sort(s)
	if joined := strings.Join(s, "; "); joined != a.lastSkipped {
		a.lastSkipped = joined
		if joined != "" {
			log.Info("nodes without a route", "node", a.NodeName, "skipped", joined)
		}
	}
}
