package awstest

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
)

var instanceActions = actions{
	"RunInstances":       (*Server).runInstances,
	"DescribeInstances":  (*Server).describeInstances,
	"StopInstances":      (*Server).stopInstances,
	"TerminateInstances": (*Server).terminateInstances,
}

// UserDataLimit is the most bytes of user-data EC2 takes (before base64).
const UserDataLimit = 16 << 10

// Instance is an EC2 instance as the fake keeps it, with what RunInstances asked for.
type Instance struct {
	ID, ImageID, InstanceType, SubnetID, VPCID string
	SecurityGroups                             []string
	PrivateIP, PublicIP                        string
	State                                      string
	Launched                                   time.Time
	ClientToken, Reservation                   string
	Tags                                       map[string]string
	// UserData is the decoded user-data.
	UserData []byte
	// Metadata options: HttpTokens ("required" or "optional"), HttpPutResponseHopLimit, HttpEndpoint.
	HTTPTokens    string
	HopLimit      int
	HTTPEndpoint  string
	RootEncrypted bool
	// BlockDevices asked for, by device name: whether each is encrypted.
	BlockDevices    map[string]bool
	InstanceProfile string
	// NetworkInterface is the interface made before the instance (CreateNetworkInterface) that it
	// was launched with, empty if RunInstances made its interface.
	NetworkInterface string

	hidden int
}

type clientToken struct {
	fingerprint string
	reservation string
	ids         []string
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlInstance struct {
	ID           string        `xml:"instanceId"`
	ImageID      string        `xml:"imageId"`
	State        xmlState      `xml:"instanceState"`
	PrivateIP    string        `xml:"privateIpAddress,omitempty"`
	PublicIP     string        `xml:"ipAddress,omitempty"`
	InstanceType string        `xml:"instanceType"`
	LaunchTime   string        `xml:"launchTime"`
	SubnetID     string        `xml:"subnetId"`
	VpcID        string        `xml:"vpcId"`
	ClientToken  string        `xml:"clientToken,omitempty"`
	Groups       []xmlGroupID  `xml:"groupSet>item"`
	Metadata     xmlMetadata   `xml:"metadataOptions"`
	Profile      *xmlProfile   `xml:"iamInstanceProfile,omitempty"`
	Devices      []xmlBlockDev `xml:"blockDeviceMapping>item"`
	Tags         []xmlTag      `xml:"tagSet>item"`
}

type xmlGroupID struct {
	ID string `xml:"groupId"`
}

type xmlMetadata struct {
	State    string `xml:"state"`
	Tokens   string `xml:"httpTokens"`
	HopLimit int    `xml:"httpPutResponseHopLimit"`
	Endpoint string `xml:"httpEndpoint"`
}

type xmlProfile struct {
	ARN string `xml:"arn"`
	ID  string `xml:"id"`
}

type xmlBlockDev struct {
	Device string `xml:"deviceName"`
	Volume string `xml:"ebs>volumeId"`
	Status string `xml:"ebs>status"`
}

func (in *Instance) xml() xmlInstance {
	x := xmlInstance{ID: in.ID, ImageID: in.ImageID, State: xmlState{Code: stateCodes[in.State], Name: in.State},
		PrivateIP: in.PrivateIP, PublicIP: in.PublicIP, InstanceType: in.InstanceType,
		LaunchTime: in.Launched.UTC().Format(timeFormat), SubnetID: in.SubnetID, VpcID: in.VPCID, ClientToken: in.ClientToken,
		Metadata: xmlMetadata{State: "applied", Tokens: in.HTTPTokens, HopLimit: in.HopLimit, Endpoint: in.HTTPEndpoint},
		Tags:     tags(in.Tags).xml()}
	for _, g := range in.SecurityGroups {
		x.Groups = append(x.Groups, xmlGroupID{ID: g})
	}
	if in.InstanceProfile != "" {
		x.Profile = &xmlProfile{ARN: "arn:aws:iam::" + AccountID + ":instance-profile/" + in.InstanceProfile, ID: "AIPAKILN" + strings.ToUpper(in.ID[2:10])}
	}
	for _, d := range sortedKeys(in.BlockDevices) {
		x.Devices = append(x.Devices, xmlBlockDev{Device: d, Volume: "vol-" + in.ID[2:], Status: "attached"})
	}
	return x
}

type xmlReservation struct {
	ID        string        `xml:"reservationId"`
	OwnerID   string        `xml:"ownerId"`
	Instances []xmlInstance `xml:"instancesSet>item"`
}

func (s *Server) runInstances(p params) (any, error) {
	token := p.get("ClientToken")
	if len(token) > 64 {
		return nil, badRequest("InvalidParameterValue", "ClientToken is longer than 64 characters")
	}
	if token != "" {
		if prev, ok := s.ec2.tokens[token]; ok {
			if prev.fingerprint != fingerprint(p) {
				return nil, badRequest("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return s.reservation(prev.reservation, prev.ids), nil
		}
	}
	in, err := s.instanceFrom(p)
	if err != nil {
		return nil, err
	}
	in.Reservation = s.id("r")
	in.ClientToken = token
	in.State = "pending"
	in.Launched = s.now()
	in.hidden = s.faults.HideNewInstances
	s.ec2.instances[in.ID] = in
	s.ec2.order = append(s.ec2.order, in.ID)
	if token != "" {
		s.ec2.tokens[token] = clientToken{fingerprint: fingerprint(p), reservation: in.Reservation, ids: []string{in.ID}}
	}
	if hook := s.faults.AfterRunInstances; hook != nil {
		// The hook may call back into the fake; let it.
		s.mu.Unlock()
		err := hook([]string{in.ID})
		s.mu.Lock()
		if err != nil {
			return nil, dropConnection{}
		}
	}
	return s.reservation(in.Reservation, []string{in.ID}), nil
}

func (s *Server) reservation(id string, ids []string) any {
	r := xmlReservation{ID: id, OwnerID: AccountID}
	for _, i := range ids {
		r.Instances = append(r.Instances, s.ec2.instances[i].xml())
	}
	return &struct {
		ec2Meta
		xmlReservation
	}{xmlReservation: r}
}

// instanceFrom checks RunInstances' parameters and builds the instance they ask for.
func (s *Server) instanceFrom(p params) (*Instance, error) {
	in := &Instance{ImageID: p.get("ImageId"), InstanceType: p.get("InstanceType"), BlockDevices: map[string]bool{}}
	if !strings.HasPrefix(in.ImageID, "ami-") {
		return nil, badRequest("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", in.ImageID)
	}
	root, ok := s.ec2.images[in.ImageID]
	if !ok {
		return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", in.ImageID)
	}
	if in.InstanceType == "" {
		in.InstanceType = "m1.small"
	}
	minCount, err := p.int("MinCount", 0)
	if err != nil {
		return nil, err
	}
	maxCount, err := p.int("MaxCount", 0)
	if err != nil {
		return nil, err
	}
	if minCount != 1 || maxCount != 1 {
		return nil, badRequest("InvalidParameterValue", "the fake makes one instance per call (MinCount=%d, MaxCount=%d)", minCount, maxCount)
	}
	subnetID := p.get("SubnetId")
	groups := p.list("SecurityGroupId")
	var publicIP *bool
	var eni string
	if nis := p.items("NetworkInterface"); len(nis) > 0 {
		if len(nis) > 1 || subnetID != "" || len(groups) > 0 {
			return nil, badRequest("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request")
		}
		ni := nis[0]
		if ni.get("DeviceIndex") != "0" {
			return nil, badRequest("InvalidParameterValue", "the primary network interface has DeviceIndex 0")
		}
		subnetID, groups = ni.get("SubnetId"), ni.list("SecurityGroupId")
		if v := ni.get("AssociatePublicIpAddress"); v != "" {
			b := v == "true"
			publicIP = &b
		}
		if eni = ni.get("NetworkInterfaceId"); eni != "" {
			switch {
			case subnetID != "" || len(groups) > 0 || ni.get("PrivateIpAddress") != "":
				return nil, badRequest("InvalidParameterCombination", "A network interface may not specify both a network interface ID and a subnet, security groups or a private IP address")
			case publicIP != nil:
				return nil, badRequest("InvalidParameterCombination", "The associatePublicIPAddress parameter cannot be specified when launching with an existing network interface")
			case ni.get("DeleteOnTermination") == "true":
				return nil, badRequest("InvalidParameterCombination", "DeleteOnTermination can be true only for a network interface created at launch")
			}
			n, ok := s.ec2.enis[eni]
			if !ok {
				return nil, notFound("InvalidNetworkInterfaceID.NotFound", "network interface ID", eni)
			}
			if n.instance != "" {
				return nil, badRequest("InvalidNetworkInterface.InUse", "Interface: [%s] in use.", eni)
			}
			subnetID = n.subnet
		}
	}
	sn, ok := s.ec2.subnets[subnetID]
	if !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", subnetID)
	}
	in.SubnetID, in.VPCID = sn.id, sn.vpc
	for _, g := range groups {
		sg, ok := s.ec2.groups[g]
		if !ok {
			return nil, notFound("InvalidGroup.NotFound", "security group", g)
		}
		if sg.vpc != sn.vpc {
			return nil, badRequest("InvalidParameter", "Security group %s and subnet %s belong to different networks.", g, sn.id)
		}
	}
	in.SecurityGroups = groups
	if ud := p.get("UserData"); ud != "" {
		raw, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, badRequest("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(raw) > UserDataLimit {
			return nil, badRequest("InvalidParameterValue", "User data is limited to %d bytes", UserDataLimit)
		}
		in.UserData = raw
	}
	in.HTTPTokens, in.HopLimit, in.HTTPEndpoint = "optional", 1, "enabled"
	if md := p.sub("MetadataOptions"); len(md) > 0 {
		if v := md.get("HttpTokens"); v != "" {
			if v != "required" && v != "optional" {
				return nil, badRequest("InvalidParameterValue", "Invalid HttpTokens %q", v)
			}
			in.HTTPTokens = v
		}
		if in.HopLimit, err = md.int("HttpPutResponseHopLimit", 1); err != nil {
			return nil, err
		}
		if v := md.get("HttpEndpoint"); v != "" {
			in.HTTPEndpoint = v
		}
	}
	for _, bd := range p.items("BlockDeviceMapping") {
		dev := bd.get("DeviceName")
		if dev == "" {
			return nil, badRequest("MissingParameter", "BlockDeviceMapping needs a DeviceName")
		}
		in.BlockDevices[dev] = bd.get("Ebs.Encrypted") == "true"
	}
	if _, ok := in.BlockDevices[root]; !ok {
		in.BlockDevices[root] = false // the AMI's root device, unencrypted unless asked
	}
	in.RootEncrypted = in.BlockDevices[root]
	if name := p.get("IamInstanceProfile.Name"); name != "" {
		in.InstanceProfile = name
	} else if arn := p.get("IamInstanceProfile.Arn"); arn != "" {
		in.InstanceProfile = arn[strings.LastIndex(arn, "/")+1:]
	}
	t, err := tagsFrom(p.withoutTagSpecs("volume"), "instance")
	if err != nil {
		return nil, err
	}
	in.Tags = t
	in.ID = s.id("i")
	if eni != "" {
		// The instance takes the interface's subnet, groups and address.
		if err := s.attach(eni, in); err != nil {
			return nil, err
		}
		return in, nil
	}
	// Private address: the subnet's lowest free one (EC2 keeps the first four and the last).
	addr, err := sn.allocate(in.ID)
	if err != nil {
		return nil, err
	}
	in.PrivateIP = addr.String()
	if (publicIP != nil && *publicIP) || (publicIP == nil && sn.mapPublicIP) {
		in.PublicIP = "203.0.113." + strconv.Itoa(len(s.ec2.instances)%250+1)
	}
	return in, nil
}

// withoutTagSpecs drops the TagSpecification entries of a resource type (volumes, tagged alike).
func (p params) withoutTagSpecs(resourceType string) params {
	out := params{}
	for k, v := range p {
		out[k] = v
	}
	for _, n := range func() []int { _, idx := p.indexes("TagSpecification"); return idx }() {
		prefix := "TagSpecification." + strconv.Itoa(n)
		if p.get(prefix+".ResourceType") == resourceType {
			for k := range p {
				if strings.HasPrefix(k, prefix+".") {
					delete(out, k)
				}
			}
		}
	}
	return out
}

func (s *Server) describeInstances(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("InstanceId")
	if len(ids) > 0 && p.has("MaxResults") {
		return nil, badRequest("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	var match1 []*Instance
	for _, id := range s.ec2.order {
		in := s.ec2.instances[id]
		if in.hidden > 0 {
			continue
		}
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		attrs := map[string][]string{"instance-id": {in.ID}, "instance-state-name": {in.State}, "client-token": {in.ClientToken},
			"subnet-id": {in.SubnetID}, "vpc-id": {in.VPCID}, "image-id": {in.ImageID}, "private-ip-address": {in.PrivateIP}}
		ok, err := match(fs, in.Tags, attrs)
		if err != nil {
			return nil, err
		}
		if ok {
			match1 = append(match1, in)
		}
	}
	for _, id := range ids {
		if _, ok := s.ec2.instances[id]; !ok {
			return nil, notFound("InvalidInstanceID.NotFound", "instance ID", id)
		}
	}
	from, to, next, err := page(p, len(match1))
	if err != nil {
		return nil, err
	}
	var res []xmlReservation
	byID := map[string]int{}
	for _, in := range match1[from:to] {
		i, ok := byID[in.Reservation]
		if !ok {
			res = append(res, xmlReservation{ID: in.Reservation, OwnerID: AccountID})
			i = len(res) - 1
			byID[in.Reservation] = i
		}
		res[i].Instances = append(res[i].Instances, in.xml())
	}
	// Time passes: hidden instances come closer to showing, transitions settle.
	for _, in := range s.ec2.instances {
		if in.hidden > 0 {
			in.hidden--
			continue
		}
		switch in.State {
		case "pending":
			in.State = "running"
		case "stopping":
			in.State = "stopped"
		case "shutting-down":
			s.terminated(in)
		}
	}
	return &struct {
		ec2Meta
		Reservations []xmlReservation `xml:"reservationSet>item"`
		Next         string           `xml:"nextToken,omitempty"`
	}{Reservations: res, Next: next}, nil
}

type xmlStateChange struct {
	ID       string   `xml:"instanceId"`
	Current  xmlState `xml:"currentState"`
	Previous xmlState `xml:"previousState"`
}

func (s *Server) stopInstances(p params) (any, error) {
	return s.changeInstances(p, func(in *Instance) error {
		switch in.State {
		case "running":
			in.State = "stopping"
		case "stopping", "stopped":
		default:
			return badRequest("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be stopped.", in.ID)
		}
		return nil
	})
}

func (s *Server) terminateInstances(p params) (any, error) {
	return s.changeInstances(p, func(in *Instance) error {
		if in.State != "terminated" {
			in.State = "shutting-down"
			s.deregisterEverywhere(in.ID)
		}
		return nil
	})
}

// changeInstances moves every instance InstanceId names by change, and answers with their states
// before and after.
func (s *Server) changeInstances(p params, change func(*Instance) error) (any, error) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter InstanceId")
	}
	for _, id := range ids {
		if _, ok := s.ec2.instances[id]; !ok {
			return nil, notFound("InvalidInstanceID.NotFound", "instance ID", id)
		}
	}
	var out []xmlStateChange
	for _, id := range ids {
		in := s.ec2.instances[id]
		prev := in.State
		if err := change(in); err != nil {
			return nil, err
		}
		out = append(out, xmlStateChange{ID: id, Current: xmlState{Code: stateCodes[in.State], Name: in.State},
			Previous: xmlState{Code: stateCodes[prev], Name: prev}})
	}
	return &struct {
		ec2Meta
		Changes []xmlStateChange `xml:"instancesSet>item"`
	}{Changes: out}, nil
}
