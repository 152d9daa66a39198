package aws

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// Tags kiln puts on everything it creates.
const (
	TagCluster  = "kiln.dev/cluster"
	TagRole     = "kiln.dev/role"
	TagPool     = "kiln.dev/pool"
	TagName     = "kiln.dev/name"
	TagResource = "kiln.dev/resource"
)

// Options configure a Provider. Zero values take the defaults named on each field.
type Options struct {
	// Region to work in; empty keeps the AWS config's.
	Region string
	// AvailabilityZones the network spans: at least two, each with a private subnet for nodes and a
	// public one for its NAT gateway and the load balancer.
	AvailabilityZones []string
	// VPCID of an existing VPC to build in; empty creates a VPC with the node CIDR. An existing VPC is
	// never deleted by DeleteNetwork.
	VPCID string
	// InstanceType of every node. Defaults to "m6i.large".
	InstanceType string
	// InstanceProfile (a name) attached to every node, if set.
	InstanceProfile string
	// RootVolumeGiB is the size of the encrypted root volume; 0 keeps the image's size.
	RootVolumeGiB int32
	// AdminCIDRs may reach the API through the load balancer, as well as the node network.
	AdminCIDRs []string
	// Bucket holds the machines' configs until they joined (see userData). Required; kiln does not
	// create it.
	Bucket string
	// BucketPrefix is put before every object key. Defaults to "kiln-bootstrap/".
	BucketPrefix string
	// PresignExpiry is how long a node's presigned config URL works (spec.security.enrollmentTTL).
	// Defaults to 15 minutes.
	PresignExpiry time.Duration
	// S3PathStyle addresses buckets as https://ENDPOINT/BUCKET (S3-compatible endpoints, the fake).
	S3PathStyle bool

	// QPS caps the requests per second this provider sends to AWS, all APIs and retries together; Burst
	// is the bucket's depth. Default to 10 and 5.
	QPS   float64
	Burst int
	// MaxAttempts per API call, the first included. Defaults to 8.
	MaxAttempts int
	// RetryBaseDelay and MaxBackoff bound the jittered exponential backoff between attempts: attempt
	// n waits a random time up to min(MaxBackoff, RetryBaseDelay*2^n). Default to 200ms and 20s.
	RetryBaseDelay time.Duration
	MaxBackoff     time.Duration
	// PollInterval is how often a wait (a NAT gateway going away, an instance becoming visible)
	// looks again. Defaults to 5s.
	PollInterval time.Duration
	// PollAttempts bounds each wait. Defaults to 60.
	PollAttempts int
	// PageSize of DescribeInstances. Defaults to 1000, the most EC2 returns.
	PageSize int32
}

// OptionsFor takes the options a cluster spec sets (spec.provider.aws and spec.network.adminCIDRs);
// the bootstrap bucket and the tuning knobs are the caller's to add.
func OptionsFor(c *v1alpha1.Cluster) (Options, error) {
	if c == nil || c.Spec.Provider.AWS == nil {
		return Options{}, fmt.Errorf("aws: spec.provider.aws is not set: %w", ErrInvalidSpec)
	}
	a := c.Spec.Provider.AWS
	return Options{
		Region:            a.Region,
		AvailabilityZones: slices.Clone(a.AvailabilityZones),
		VPCID:             a.VPCID,
		InstanceType:      a.InstanceType,
		InstanceProfile:   a.InstanceProfile,
		AdminCIDRs:        slices.Clone(c.Spec.Network.AdminCIDRs),
		PresignExpiry:     c.Spec.Security.EnrollmentTTL.Duration,
	}, nil
}

func (o *Options) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.InstanceType == "" {
		o.InstanceType = "m6i.large"
	}
	if o.BucketPrefix == "" {
		o.BucketPrefix = "kiln-bootstrap/"
	}
	def(&o.PresignExpiry, v1alpha1.DefaultEnrollmentTTL)
	if o.QPS <= 0 {
		o.QPS = 10
	}
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	def(&o.RetryBaseDelay, 200*time.Millisecond)
	def(&o.MaxBackoff, 20*time.Second)
	def(&o.PollInterval, 5*time.Second)
	if o.PollAttempts <= 0 {
		o.PollAttempts = 60
	}
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
}

// Provider places a cluster's machines on EC2 and builds their network. It implements
// provisioner.Provider, provisioner.NetworkProvider, provisioner.NetworkDeleter,
// provisioner.Stopper, provisioner.Joiner and provisioner.Addresser, and is safe for concurrent use.
type Provider struct {
	opts    Options
	ec2     *ec2.Client
	elb     *elb.Client
	s3      *s3.Client
	presign *s3.PresignClient
	limiter *rate.Limiter

	mu   sync.Mutex
	nets map[string]*clusterNet
	// roots caches each image's root device name.
	roots map[string]string
	// names serializes the reserves and creates of each machine name (lockName).
	names map[string]*sync.Mutex
}

var (
	_ provisioner.Provider        = (*Provider)(nil)
	_ provisioner.NetworkProvider = (*Provider)(nil)
	_ provisioner.NetworkDeleter  = (*Provider)(nil)
	_ provisioner.Stopper         = (*Provider)(nil)
	_ provisioner.Joiner          = (*Provider)(nil)
	_ provisioner.Addresser       = (*Provider)(nil)
)

// New returns a provider that talks to AWS with cfg (its region, credentials and, for S3-compatible
// or test endpoints, its BaseEndpoint and HTTPClient). cfg's retryer and HTTP client are wrapped:
// every attempt waits for the QPS cap, and retries back off with jitter.
func New(cfg aws.Config, opts Options) (*Provider, error) {
	opts.setDefaults()
	cfg = cfg.Copy()
	if opts.Region != "" {
		cfg.Region = opts.Region
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("aws: no region in the AWS config: %w", ErrInvalidConfig)
	}
	limiter := rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst)
	next := cfg.HTTPClient
	if next == nil {
		next = awshttp.NewBuildableClient()
	}
	cfg.HTTPClient = &limitedClient{limiter: limiter, next: next}
	backoff := jitter{base: opts.RetryBaseDelay, max: opts.MaxBackoff}
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = opts.MaxAttempts
			o.MaxBackoff = opts.MaxBackoff
			o.Backoff = backoff
			// The QPS cap paces every attempt; the SDK's retry quota would fail calls under a long
			// stretch of throttling instead of slowing down.
			o.RateLimiter = ratelimit.None
		})
	}
	p := &Provider{
		opts:    opts,
		ec2:     ec2.NewFromConfig(cfg),
		elb:     elb.NewFromConfig(cfg),
		limiter: limiter,
		nets:    map[string]*clusterNet{},
		roots:   map[string]string{},
		names:   map[string]*sync.Mutex{},
	}
	p.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = opts.S3PathStyle
		// Bootstrap objects are small and go over TLS; Ignition checks their sha512 on the node.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	p.presign = s3.NewPresignClient(p.s3, func(o *s3.PresignOptions) { o.Expires = opts.PresignExpiry })
	return p, nil
}

// limitedClient makes every HTTP attempt wait for a token of the QPS cap.
type limitedClient struct {
	limiter *rate.Limiter
	next    aws.HTTPClient
}

func (c *limitedClient) Do(r *http.Request) (*http.Response, error) {
	if err := c.limiter.Wait(r.Context()); err != nil {
		return nil, err
	}
	return c.next.Do(r)
}

// jitter is "full jitter" exponential backoff: a random delay up to min(max, base*2^attempt).
type jitter struct {
	base, max time.Duration
}

func (j jitter) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	ceil := j.max
	if attempt < 30 {
		if d := j.base << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1)), nil
}

// hints explain the AWS error codes a user can act on.
var hints = map[string]string{
	"UnauthorizedOperation":         "the credentials lack an IAM permission kiln needs (see the package documentation)",
	"AccessDenied":                  "the credentials lack an IAM permission kiln needs (see the package documentation)",
	"AccessDeniedException":         "the credentials lack an IAM permission kiln needs (see the package documentation)",
	"AuthFailure":                   "AWS did not accept the credentials",
	"InvalidClientTokenId":          "AWS did not accept the credentials",
	"ExpiredToken":                  "the credentials have expired",
	"RequestLimitExceeded":          "AWS kept throttling after every retry",
	"Throttling":                    "AWS kept throttling after every retry",
	"SlowDown":                      "AWS kept throttling after every retry",
	"InvalidAMIID.NotFound":         "the image is not an AMI in this region and account",
	"InvalidAMIID.Malformed":        "the image is not an AMI ID (ami-...)",
	"InsufficientInstanceCapacity":  "AWS has no capacity for the instance type in that availability zone now",
	"InstanceLimitExceeded":         "the account's instance quota is reached",
	"VcpuLimitExceeded":             "the account's vCPU quota is reached",
	"AddressLimitExceeded":          "the account's Elastic IP quota is reached",
	"VpcLimitExceeded":              "the account's VPC quota is reached",
	"NatGatewayLimitExceeded":       "the account's NAT gateway quota is reached",
	"InvalidSubnet.Range":           "the subnet is not inside the VPC's CIDR",
	"InvalidSubnet.Conflict":        "the subnet overlaps another subnet of the VPC",
	"NoSuchBucket":                  "the bootstrap bucket does not exist",
	"InvalidParameterCombination":   "kiln asked for an impossible combination",
	"IdempotentParameterMismatch":   "the client token was used for a different request",
	"DependencyViolation":           "something still uses the resource",
	"InvalidInstanceID.NotFound":    "the instance does not exist (yet)",
	"InvalidVpcID.NotFound":         "the VPC does not exist in this region",
	"InvalidParameterValue":         "AWS rejected a value",
	"InvalidPermission.Duplicate":   "the rule exists already",
	"DuplicateLoadBalancerName":     "a load balancer of that name exists with other settings",
	"TooManyLoadBalancers":          "the account's load balancer quota is reached",
	"InvalidConfigurationRequest":   "the load balancer configuration is invalid",
	"OptInRequired":                 "the account is not subscribed to the service in this region",
	"UnsupportedOperation":          "AWS does not support this here",
	"InvalidGroup.NotFound":         "the security group does not exist",
	"InvalidSubnetID.NotFound":      "the subnet does not exist",
	"Unsupported":                   "the instance type or option is not supported in that availability zone",
	"InvalidInstanceType":           "the instance type does not exist here",
	"InvalidKeyPair.NotFound":       "the key pair does not exist",
	"InvalidBlockDeviceMapping":     "the root volume settings do not fit the image",
	"InvalidIPAddress.InUse":        "the Elastic IP is still associated",
	"ResourceInUse":                 "something still uses the resource",
	"InvalidTarget":                 "the instance cannot be a target (not running, or in another VPC)",
	"IncorrectInstanceState":        "the instance is not in a state that allows this",
	"InvalidNatGatewayID.NotFound":  "the NAT gateway does not exist",
	"InvalidRouteTableID.NotFound":  "the route table does not exist",
	"InvalidAssociationID.NotFound": "the route table association does not exist",

	"InvalidNetworkInterfaceID.NotFound": "the network interface does not exist",
	"InvalidNetworkInterface.InUse":      "the network interface is attached to an instance",
	"InsufficientFreeAddressesInSubnet":  "the subnet has no free private address left",
}

// apiCode is the AWS error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wrap turns an SDK error into kiln's: "aws: OP: HINT (CODE): SDK error". The SDK's error names the
// operation, HTTP status, request ID, code and AWS's message; it never holds request bodies, so no
// user-data or key reaches it.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	op := fmt.Sprintf(format, args...)
	if code := apiCode(err); code != "" {
		if hint, ok := hints[code]; ok {
			return fmt.Errorf("aws: %s: %s (%s): %w", op, hint, code, err)
		}
	}
	return fmt.Errorf("aws: %s: %w", op, err)
}
