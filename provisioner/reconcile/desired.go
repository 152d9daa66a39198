package reconcile

import (
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// Group is a set of identical machines the spec asks for: the control plane or one node pool.
type Group struct {
	// Pool is the pool name, provisioner.ControlPlanePool for the control plane.
	Pool string
	// Role is v1alpha1.RoleControlPlane or v1alpha1.RoleWorker.
	Role string
	// Count of machines.
	Count int
	// Image every machine of the group should run; a machine on another image is rolled.
	Image string
	// MaxUnavailable is how many of Count may be unavailable while an image rolls out.
	MaxUnavailable int
}

// Desired is what the spec asks for: the control plane first, then the node pools in spec order.
type Desired struct {
	Cluster string
	Groups  []Group
}

// DesiredFromSpec is what cluster c asks for. Empty counts and maxUnavailable take their documented
// defaults; the control plane rolls with no machine unavailable (it is replaced one at a time, each
// replacement up before the old machine goes).
func DesiredFromSpec(c *v1alpha1.Cluster) Desired {
	s := c.Spec
	cp := s.ControlPlane.Count
	if cp == 0 {
		cp = v1alpha1.DefaultControlPlaneCount
	}
	d := Desired{Cluster: c.Metadata.Name}
	d.Groups = append(d.Groups, Group{
		Pool:  provisioner.ControlPlanePool,
		Role:  v1alpha1.RoleControlPlane,
		Count: cp,
		Image: s.ControlPlane.Image,
	})
	for _, np := range s.NodePools {
		mu := np.MaxUnavailable
		if mu == 0 {
			mu = v1alpha1.DefaultMaxUnavailable
		}
		d.Groups = append(d.Groups, Group{
			Pool:           np.Name,
			Role:           v1alpha1.RoleWorker,
			Count:          np.Count,
			Image:          np.Image,
			MaxUnavailable: mu,
		})
	}
	return d
}

// Policy holds the guards of remediation. Zero fields take the defaults.
type Policy struct {
	// MaxUnhealthy: when more machines of a group (a pool, or the control plane) are unhealthy than
	// this allows, none of the group is replaced. A percentage ("40%", rounded down) or a count ("2"),
	// as spec.health.maxUnhealthy (v1alpha1.Health.MaxUnhealthyCount). Defaults to "40%".
	MaxUnhealthy string
	// MaxInFlight is how many replacements (remediation and rollout) may be under way at once in the
	// cluster. Defaults to 1.
	MaxInFlight int
	// MaxAttempts is how many times one machine is replaced before kiln gives up on it. Defaults to 3.
	MaxAttempts int
	// BackoffBase is the wait after the first attempt; it doubles with every further one. Defaults to 30s.
	BackoffBase time.Duration
	// BackoffCap is the longest wait between attempts. Defaults to 10m.
	BackoffCap time.Duration
	// KeepFailed powers failed machines off instead of deleting them, for forensics.
	KeepFailed bool
	// ControlPlaneFirst holds back the creation of the node pools' missing machines until every
	// control-plane machine is up. It is for emulated machines (QEMU under TCG) on a small host, where
	// workers that boot beside a new control plane starve it of the CPU its API server needs to come
	// up, and cannot join before it does anyway. The executor then judges control-plane machines by
	// their Nodes alone (see converge.Executor), so that "up" means the control plane's Node is Ready.
	ControlPlaneFirst bool
}

// Policy defaults.
const (
	DefaultMaxInFlight = 1
	DefaultMaxAttempts = 3
	DefaultBackoffBase = 30 * time.Second
	DefaultBackoffCap  = 10 * time.Minute
)

// PolicyFromSpec is the policy of the cluster spec's health block.
func PolicyFromSpec(h v1alpha1.Health) Policy {
	return Policy{MaxUnhealthy: h.MaxUnhealthy}
}

func (p Policy) withDefaults() Policy {
	if p.MaxUnhealthy == "" {
		p.MaxUnhealthy = v1alpha1.DefaultMaxUnhealthy
	}
	if p.MaxInFlight <= 0 {
		p.MaxInFlight = DefaultMaxInFlight
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = DefaultBackoffBase
	}
	if p.BackoffCap <= 0 {
		p.BackoffCap = DefaultBackoffCap
	}
	return p
}

// maxUnhealthy is how many of total machines may be unhealthy while machines are still replaced.
func (p Policy) maxUnhealthy(total int) int {
	return v1alpha1.Health{MaxUnhealthy: p.MaxUnhealthy}.MaxUnhealthyCount(total)
}

// backoff is the wait before attempt n+1 after n attempts (n >= 1).
func (p Policy) backoff(n int) time.Duration {
	d := p.BackoffBase
	for i := 1; i < n; i++ {
		d *= 2
		if d >= p.BackoffCap {
			return p.BackoffCap
		}
	}
	return min(d, p.BackoffCap)
}
