package awstest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
)

// EC2 is spread over a file per resource (vpc.go, subnet.go, ...): its state, its XML, its handlers
// and the table of its actions. This file holds what they share.

type ec2State struct {
	vpcs      map[string]*vpc
	subnets   map[string]*subnet
	igws      map[string]*igw
	addresses map[string]*address
	nats      map[string]*natGateway
	tables    map[string]*routeTable
	groups    map[string]*securityGroup
	instances map[string]*Instance
	enis      map[string]*networkInterface
	// order keeps instances in creation order for stable pages.
	order  []string
	tokens map[string]clientToken
	// images maps an AMI ID to its root device name.
	images map[string]string
	// created maps ACTION/TOKEN to the fingerprint and ID of what a create with a client token made.
	created map[string][2]string
}

func (e *ec2State) init() {
	e.vpcs = map[string]*vpc{}
	e.subnets = map[string]*subnet{}
	e.igws = map[string]*igw{}
	e.addresses = map[string]*address{}
	e.nats = map[string]*natGateway{}
	e.tables = map[string]*routeTable{}
	e.groups = map[string]*securityGroup{}
	e.instances = map[string]*Instance{}
	e.enis = map[string]*networkInterface{}
	e.tokens = map[string]clientToken{}
	e.images = map[string]string{}
	e.created = map[string][2]string{}
}

// idempotent looks a create's client token up: the ID it made before, IdempotentParameterMismatch for
// the same token with other parameters, or "" for a new token. remember records a new one.
func (e *ec2State) idempotent(action string, p params) (string, error) {
	token := p.get("ClientToken")
	if token == "" {
		return "", nil
	}
	if len(token) > 64 {
		return "", badRequest("InvalidParameterValue", "ClientToken is longer than 64 characters")
	}
	prev, ok := e.created[action+"/"+token]
	if !ok {
		return "", nil
	}
	if prev[0] != fingerprint(p) {
		return "", badRequest("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
	}
	return prev[1], nil
}

func (e *ec2State) remember(action string, p params, id string) {
	if token := p.get("ClientToken"); token != "" {
		e.created[action+"/"+token] = [2]string{fingerprint(p), id}
	}
}

// ec2Actions are the EC2 actions the fake answers, each file's for its resource.
var ec2Actions = merge(
	vpcActions,
	subnetActions,
	internetGatewayActions,
	eipActions,
	natGatewayActions,
	routeTableActions,
	securityGroupActions,
	imageActions,
	instanceActions,
	networkInterfaceActions,
)

// ec2Action answers one EC2 action with the server's lock held.
func (s *Server) ec2Action(action string, p params) (any, error) {
	h, found := ec2Actions[action]
	if !found {
		return nil, badRequest("InvalidAction", "The action %s is not valid for this web service.", action)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return h(s, p)
}

type ok struct {
	ec2Meta
	Return bool `xml:"return"`
}

func okReturn() *ok { return &ok{Return: true} }

func notFound(code, what, id string) error {
	return badRequest(code, "The %s '%s' does not exist", what, id)
}

func parseCIDR(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p != p.Masked() {
		return netip.Prefix{}, badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. This is not a valid CIDR block.", s, field)
	}
	return p, nil
}

const timeFormat = "2006-01-02T15:04:05.000Z"

// fingerprint is what makes two RunInstances calls "the same request" for a client token: every
// parameter but the token itself.
func fingerprint(p params) string {
	var keys []string
	for k := range p {
		if k != "ClientToken" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%q\n", k, p[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
