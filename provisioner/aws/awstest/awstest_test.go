package awstest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

const image = "ami-0123456789abcdef0"

func clients(t *testing.T) (*awstest.Server, *ec2.Client, *elb.Client, *s3.Client) {
	t.Helper()
	f := awstest.Start(t)
	f.AddImage(image, "")
	cfg := f.Config()
	return f, ec2.NewFromConfig(cfg), elb.NewFromConfig(cfg), s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// subnet makes a VPC and a subnet for instances.
func subnet(t *testing.T, c *ec2.Client) (vpc, subnet string) {
	t.Helper()
	ctx := t.Context()
	v, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: aws.String("10.0.1.0/24"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(v.Vpc.VpcId), aws.ToString(s.Subnet.SubnetId)
}

func TestUnknownActions(t *testing.T) {
	_, e, l, _ := clients(t)
	if _, err := e.DescribeKeyPairs(t.Context(), &ec2.DescribeKeyPairsInput{}); code(err) != "InvalidAction" {
		t.Errorf("EC2 DescribeKeyPairs: %v, want InvalidAction", err)
	}
	if _, err := l.DescribeRules(t.Context(), &elb.DescribeRulesInput{}); code(err) != "InvalidAction" {
		t.Errorf("ELB DescribeRules: %v, want InvalidAction", err)
	}
}

func TestRejectsUnsignedAndForeignCredentials(t *testing.T) {
	f, _, _, _ := clients(t)
	resp, err := f.HTTPClient().PostForm(f.URL, url.Values{"Action": {"DescribeVpcs"}, "Version": {"2016-11-15"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("<Response><Errors><Error><Code>AuthFailure</Code>")) {
		t.Errorf("unsigned request: %s %s, want 403 with EC2's error XML", resp.Status, body)
	}
	cfg := f.Config()
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIAOTHER", SecretAccessKey: "x"}, nil
	})
	if _, err := ec2.NewFromConfig(cfg).DescribeVpcs(t.Context(), &ec2.DescribeVpcsInput{}); code(err) != "AuthFailure" {
		t.Errorf("foreign access key: %v, want AuthFailure", err)
	}
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: awstest.AccessKeyID, SecretAccessKey: "not-the-secret"}, nil
	})
	_, err = ec2.NewFromConfig(cfg).DescribeVpcs(t.Context(), &ec2.DescribeVpcsInput{})
	if code(err) != "AuthFailure" || !strings.Contains(err.Error(), "signature") {
		t.Errorf("wrong secret key: %v, want AuthFailure for the signature", err)
	}
	if _, err := elb.NewFromConfig(cfg).DescribeLoadBalancers(t.Context(), &elb.DescribeLoadBalancersInput{}); code(err) != "InvalidClientTokenId" {
		t.Errorf("ELB with a wrong secret key: %v, want InvalidClientTokenId", err)
	}
}

func TestTamperedPresignedURL(t *testing.T) {
	f, _, _, c := clients(t)
	f.CreateBucket("b")
	for _, k := range []string{"a", "b"} {
		if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	req, err := s3.NewPresignClient(c).PresignGetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("a")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.HTTPClient().Get(strings.Replace(req.URL, "/b/a?", "/b/b?", 1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "SignatureDoesNotMatch") {
		t.Errorf("presigned URL of a moved to b: %s %s, want 403 SignatureDoesNotMatch", resp.Status, body)
	}
}

func TestClientTokenIdempotency(t *testing.T) {
	_, c, _, _ := clients(t)
	_, sn := subnet(t, c)
	run := func(token, userData string) (*ec2.RunInstancesOutput, error) {
		return c.RunInstances(t.Context(), &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			SubnetId: aws.String(sn), ClientToken: aws.String(token), UserData: aws.String(base64.StdEncoding.EncodeToString([]byte(userData)))})
	}
	first, err := run("t1", "a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := run("t1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.Instances[0].InstanceId) != aws.ToString(again.Instances[0].InstanceId) || aws.ToString(first.ReservationId) != aws.ToString(again.ReservationId) {
		t.Errorf("same token and parameters gave %s then %s", aws.ToString(first.Instances[0].InstanceId), aws.ToString(again.Instances[0].InstanceId))
	}
	if _, err := run("t1", "b"); code(err) != "IdempotentParameterMismatch" {
		t.Errorf("same token, other user-data: %v, want IdempotentParameterMismatch", err)
	}
	other, err := run("t2", "a")
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(other.Instances[0].InstanceId) == aws.ToString(first.Instances[0].InstanceId) {
		t.Errorf("another token gave the same instance")
	}
	if _, err := run("t3", strings.Repeat("x", awstest.UserDataLimit+1)); code(err) != "InvalidParameterValue" {
		t.Errorf("user-data over 16 KiB: %v, want InvalidParameterValue", err)
	}
}

func TestDescribeInstancesPagesAndFilters(t *testing.T) {
	_, c, _, _ := clients(t)
	_, sn := subnet(t, c)
	for i := range 7 {
		cluster := "a"
		if i%2 == 1 {
			cluster = "b"
		}
		_, err := c.RunInstances(t.Context(), &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(sn),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("c"), Value: aws.String(cluster)}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	pages := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5),
		Filters: []ec2types.Filter{{Name: aws.String("tag:c"), Values: []string{"a"}}}})
	var n, calls int
	for pages.HasMorePages() {
		out, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		calls++
		for _, r := range out.Reservations {
			n += len(r.Instances)
		}
	}
	if n != 4 || calls != 1 {
		t.Errorf("tag filter gave %d instances in %d pages, want 4 in 1", n, calls)
	}
	out, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if out.NextToken == nil || len(out.Reservations) != 5 {
		t.Errorf("first page of 7: %d reservations, next %v", len(out.Reservations), out.NextToken)
	}
	if _, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(2000)}); code(err) != "InvalidParameterValue" {
		t.Errorf("MaxResults 2000: %v, want InvalidParameterValue", err)
	}
	if _, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("colour"), Values: []string{"x"}}}}); code(err) != "InvalidParameterValue" {
		t.Errorf("unknown filter: %v, want InvalidParameterValue", err)
	}
}

func TestDependencies(t *testing.T) {
	_, c, _, _ := clients(t)
	vpc, sn := subnet(t, c)
	if _, err := c.DeleteVpc(t.Context(), &ec2.DeleteVpcInput{VpcId: aws.String(vpc)}); code(err) != "DependencyViolation" {
		t.Errorf("DeleteVpc with a subnet: %v, want DependencyViolation", err)
	}
	if _, err := c.CreateSubnet(t.Context(), &ec2.CreateSubnetInput{VpcId: aws.String(vpc), CidrBlock: aws.String("10.1.0.0/24"), AvailabilityZone: aws.String("us-east-1a")}); code(err) != "InvalidSubnet.Range" {
		t.Errorf("subnet outside the VPC: %v, want InvalidSubnet.Range", err)
	}
	if _, err := c.DeleteSubnet(t.Context(), &ec2.DeleteSubnetInput{SubnetId: aws.String(sn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteVpc(t.Context(), &ec2.DeleteVpcInput{VpcId: aws.String(vpc)}); err != nil {
		t.Errorf("DeleteVpc once empty: %v", err)
	}
}

func TestS3ObjectsAndPresignedURLs(t *testing.T) {
	f, _, _, c := clients(t)
	ctx := t.Context()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: strings.NewReader("x")}); code(err) != "NoSuchBucket" {
		t.Errorf("PUT into a missing bucket: %v, want NoSuchBucket", err)
	}
	f.CreateBucket("b")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/k"), Body: strings.NewReader("hello")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/k")})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(body) != "hello" {
		t.Errorf("GET = %q", body)
	}
	req, err := s3.NewPresignClient(c, func(o *s3.PresignOptions) { o.Expires = time.Minute }).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/k")})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		resp, err := f.HTTPClient().Get(req.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, b := get(); status != http.StatusOK || b != "hello" {
		t.Errorf("presigned GET: %d %q", status, b)
	}
	f.SetClock(func() time.Time { return time.Now().Add(2 * time.Minute) })
	if status, b := get(); status != http.StatusForbidden || !strings.Contains(b, "expired") {
		t.Errorf("expired presigned GET: %d %q, want 403", status, b)
	}
	f.SetClock(time.Now)
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b"), Key: aws.String("dir/k")}); err != nil {
		t.Fatal(err)
	}
	if status, _ := get(); status != http.StatusNotFound {
		t.Errorf("presigned GET after delete: %d, want 404", status)
	}
}

func TestCreateRouteTableClientToken(t *testing.T) {
	_, c, _, _ := clients(t)
	vpc, _ := subnet(t, c)
	create := func(token string) string {
		out, err := c.CreateRouteTable(t.Context(), &ec2.CreateRouteTableInput{VpcId: aws.String(vpc), ClientToken: aws.String(token)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.RouteTable.RouteTableId)
	}
	if a, b := create("x"), create("x"); a != b {
		t.Errorf("same client token made route tables %s and %s", a, b)
	}
	if a, b := create("x"), create("y"); a == b {
		t.Errorf("two client tokens made one route table %s", a)
	}
}

func TestNetworkInterfaces(t *testing.T) {
	_, c, _, _ := clients(t)
	ctx := t.Context()
	vpc, sn := subnet(t, c) // 10.0.1.0/24
	create := func(in *ec2.CreateNetworkInterfaceInput) (ec2types.NetworkInterface, error) {
		out, err := c.CreateNetworkInterface(ctx, in)
		if err != nil {
			return ec2types.NetworkInterface{}, err
		}
		return *out.NetworkInterface, nil
	}
	eni, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(sn), TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: []ec2types.Tag{{Key: aws.String("kiln.dev/name"), Value: aws.String("m0")}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(eni.PrivateIpAddress); got != "10.0.1.4" {
		t.Errorf("first address %s, want 10.0.1.4 (AWS keeps .0 to .3)", got)
	}
	id := aws.ToString(eni.NetworkInterfaceId)

	t.Run("describe filters", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			filters []ec2types.Filter
			ids     []string
			want    int
		}{
			{name: "by tag", filters: []ec2types.Filter{{Name: aws.String("tag:kiln.dev/name"), Values: []string{"m0"}}}, want: 1},
			{name: "by other tag", filters: []ec2types.Filter{{Name: aws.String("tag:kiln.dev/name"), Values: []string{"m1"}}}, want: 0},
			{name: "by subnet", filters: []ec2types.Filter{{Name: aws.String("subnet-id"), Values: []string{sn}}}, want: 1},
			{name: "by vpc", filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{vpc}}}, want: 1},
			{name: "by id filter", filters: []ec2types.Filter{{Name: aws.String("network-interface-id"), Values: []string{id}}}, want: 1},
			{name: "by id", ids: []string{id}, want: 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: tc.filters, NetworkInterfaceIds: tc.ids})
				if err != nil {
					t.Fatal(err)
				}
				if len(out.NetworkInterfaces) != tc.want {
					t.Errorf("%d interfaces, want %d", len(out.NetworkInterfaces), tc.want)
				}
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		small, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpc), CidrBlock: aws.String("10.0.2.0/28"), AvailabilityZone: aws.String("us-east-1a")})
		if err != nil {
			t.Fatal(err)
		}
		for range 16 - 5 {
			if _, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: small.Subnet.SubnetId}); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name string
			call func() error
			code string
		}{
			{name: "address in use", code: "InvalidIPAddress.InUse", call: func() error {
				_, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(sn), PrivateIpAddress: aws.String("10.0.1.4")})
				return err
			}},
			{name: "address AWS keeps", code: "InvalidParameterValue", call: func() error {
				_, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(sn), PrivateIpAddress: aws.String("10.0.1.255")})
				return err
			}},
			{name: "subnet full", code: "InsufficientFreeAddressesInSubnet", call: func() error {
				_, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: small.Subnet.SubnetId})
				return err
			}},
			{name: "unknown subnet", code: "InvalidSubnetID.NotFound", call: func() error {
				_, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: aws.String("subnet-0000000000000000f")})
				return err
			}},
			{name: "delete unknown", code: "InvalidNetworkInterfaceID.NotFound", call: func() error {
				_, err := c.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: aws.String("eni-0000000000000000f")})
				return err
			}},
			{name: "describe unknown", code: "InvalidNetworkInterfaceID.NotFound", call: func() error {
				_, err := c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{"eni-0000000000000000f"}})
				return err
			}},
			{name: "subnet with interfaces", code: "DependencyViolation", call: func() error {
				_, err := c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(sn)})
				return err
			}},
			{name: "launch with a subnet and an interface", code: "InvalidParameterCombination", call: func() error {
				_, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
					NetworkInterfaces: []ec2types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), NetworkInterfaceId: aws.String(id), SubnetId: aws.String(sn)}}})
				return err
			}},
			{name: "launch deleting an interface that existed", code: "InvalidParameterCombination", call: func() error {
				_, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
					NetworkInterfaces: []ec2types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), NetworkInterfaceId: aws.String(id), DeleteOnTermination: aws.Bool(true)}}})
				return err
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); code(err) != tc.code {
					t.Errorf("%v, want %s", err, tc.code)
				}
			})
		}
	})

	t.Run("attached to an instance until it is terminated", func(t *testing.T) {
		run := func() (*ec2.RunInstancesOutput, error) {
			return c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				NetworkInterfaces: []ec2types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), NetworkInterfaceId: aws.String(id), DeleteOnTermination: aws.Bool(false)}}})
		}
		out, err := run()
		if err != nil {
			t.Fatal(err)
		}
		in := out.Instances[0]
		if aws.ToString(in.PrivateIpAddress) != aws.ToString(eni.PrivateIpAddress) || aws.ToString(in.SubnetId) != sn {
			t.Errorf("instance at %s in %s, interface at %s in %s", aws.ToString(in.PrivateIpAddress), aws.ToString(in.SubnetId), aws.ToString(eni.PrivateIpAddress), sn)
		}
		if _, err := run(); code(err) != "InvalidNetworkInterface.InUse" {
			t.Errorf("second launch with the interface: %v, want InvalidNetworkInterface.InUse", err)
		}
		if _, err := c.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: aws.String(id)}); code(err) != "InvalidNetworkInterface.InUse" {
			t.Errorf("delete attached: %v, want InvalidNetworkInterface.InUse", err)
		}
		if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(in.InstanceId)}}); err != nil {
			t.Fatal(err)
		}
		status := func() ec2types.NetworkInterfaceStatus {
			out, err := c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}})
			if err != nil {
				t.Fatal(err)
			}
			return out.NetworkInterfaces[0].Status
		}
		if s := status(); s != ec2types.NetworkInterfaceStatusInUse {
			t.Errorf("interface of an instance shutting down: %s, want in-use", s)
		}
		if s := status(); s != ec2types.NetworkInterfaceStatusAvailable {
			t.Errorf("interface of a terminated instance: %s, want available (it existed before the instance)", s)
		}
		if _, err := c.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
		if _, err := create(&ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(sn), PrivateIpAddress: eni.PrivateIpAddress}); err != nil {
			t.Errorf("the address of a deleted interface is free again: %v", err)
		}
	})
}

func TestAfterActionDropsTheAnswer(t *testing.T) {
	f, c, _, _ := clients(t)
	_, sn := subnet(t, c)
	var seen []string
	f.SetFaults(awstest.Faults{AfterAction: func(action string) error {
		seen = append(seen, action)
		return errors.New("crashed")
	}})
	_, err := c.CreateNetworkInterface(t.Context(), &ec2.CreateNetworkInterfaceInput{SubnetId: aws.String(sn)}, func(o *ec2.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	f.SetFaults(awstest.Faults{})
	if err == nil {
		t.Fatal("CreateNetworkInterface answered though the hook dropped the connection")
	}
	if len(seen) != 1 || seen[0] != "CreateNetworkInterface" {
		t.Errorf("hook saw %v", seen)
	}
	if n := len(f.NetworkInterfaces()); n != 1 {
		t.Errorf("%d network interfaces after the dropped answer, want the 1 made before it", n)
	}
	// An action that fails is not carried out, and the hook does not see it.
	f.SetFaults(awstest.Faults{AfterAction: func(action string) error {
		t.Errorf("hook called for %s, which failed", action)
		return nil
	}})
	if _, err := c.DeleteNetworkInterface(t.Context(), &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: aws.String("eni-00000000000000000")}); code(err) != "InvalidNetworkInterfaceID.NotFound" {
		t.Errorf("delete of a missing interface: %v", err)
	}
}
