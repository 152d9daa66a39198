package crashpoint

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	awsprovider "github.com/kiln-dev/kiln/provisioner/aws"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

func TestCrashPointsAWS(t *testing.T) {
	const ami = "ami-0123456789abcdef0"
	var (
		mu sync.Mutex // f is replaced while the kubelets read it
		f  *awstest.Server
	)
	start := func(t *testing.T) (*url.URL, *http.Client) {
		mu.Lock()
		defer mu.Unlock()
		if f != nil {
			f.Close()
		}
		f = awstest.New()
		f.AddImage(ami, "/dev/xvda")
		f.CreateBucket("kiln-bootstrap")
		u, err := url.Parse(f.URL)
		if err != nil {
			t.Fatal(err)
		}
		return u, f.Client()
	}
	up, client := start(t)
	t.Cleanup(func() { f.Close() })
	gone := func(in awstest.Instance) bool { return in.State == "terminated" || in.State == "shutting-down" }
	b := backend{
		name:     v1alpha1.ProviderAWS,
		upstream: up,
		client:   client,
		reset:    start,
		env: func(host, ca string) []string {
			none := filepath.Join(t.TempDir(), "none")
			return []string{
				"AWS_ENDPOINT_URL=https://" + host, "AWS_CA_BUNDLE=" + ca, "AWS_REGION=" + awstest.Region,
				"AWS_ACCESS_KEY_ID=" + awstest.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + awstest.SecretAccessKey,
				"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none, "AWS_EC2_METADATA_DISABLED=true",
				"KILN_AWS_S3_PATH_STYLE=true", "KILN_AWS_BUCKET=kiln-bootstrap",
			}
		},
		spec: func(c *v1alpha1.Cluster, _ string) {
			c.Spec.Provider.AWS.Region = awstest.Region
			c.Spec.Provider.AWS.AvailabilityZones = []string{"us-east-1a", "us-east-1b"}
			c.Spec.ControlPlane.Image = ami
			for i := range c.Spec.NodePools {
				c.Spec.NodePools[i].Image = ami
			}
		},
		mutating: func(r *http.Request, body []byte) (string, bool) {
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				q, err := url.ParseQuery(string(body))
				if err != nil {
					return "", false
				}
				a := q.Get("Action")
				for _, read := range []string{"Describe", "Get", "List"} {
					if strings.HasPrefix(a, read) {
						return "", false
					}
				}
				return a, a != ""
			}
			switch r.Method { // S3, path-style
			case http.MethodPut, http.MethodPost, http.MethodDelete:
				return "S3" + r.Method, true
			}
			return "", false
		},
		machines: func(t *testing.T) []machine {
			var ms []machine
			for _, in := range f.Instances() {
				if gone(in) {
					continue
				}
				switch in.Tags[awsprovider.TagCluster] {
				case "":
					t.Errorf("instance %s carries no %s tag: an instance kiln lost", in.ID, awsprovider.TagCluster)
				case "demo":
					ms = append(ms, machine{Name: in.Tags[awsprovider.TagName], Pool: in.Tags[awsprovider.TagPool], Running: in.State == "running" || in.State == "pending"})
				}
			}
			return ms
		},
		running: func() ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			var names []string
			for _, in := range f.Instances() {
				if in.Tags[awsprovider.TagCluster] == "demo" && in.State == "running" {
					names = append(names, in.Tags[awsprovider.TagName])
				}
			}
			return names, nil
		},
		fail: func(t *testing.T, name string) {
			for _, in := range f.Instances() {
				if in.Tags[awsprovider.TagName] == name && !gone(in) {
					if _, err := ec2.NewFromConfig(f.Config()).TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{in.ID}}); err != nil {
						t.Fatalf("terminate %s: %v", name, err)
					}
					return
				}
			}
			t.Fatalf("no instance %s", name)
		},
		resources: func(t *testing.T) map[string]int {
			kinds := map[string]int{}
			for _, id := range f.Tagged(awsprovider.TagCluster, "demo") {
				kind, _, _ := strings.Cut(id, "-")
				if strings.HasPrefix(id, "arn:") { // arn:aws:elasticloadbalancing:region:account:loadbalancer/net/name/id
					parts := strings.SplitN(id, ":", 6)
					kind, _, _ = strings.Cut(parts[len(parts)-1], "/")
				}
				if kind != "i" {
					kinds[kind]++
				}
			}
			return kinds
		},
	}
	h := newHarness(t, b)
	h.stride = 4
	runScenarios(t, h)
}
