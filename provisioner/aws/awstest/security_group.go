package awstest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

var securityGroupActions = actions{
	"CreateSecurityGroup":           (*Server).createSecurityGroup,
	"DescribeSecurityGroups":        (*Server).describeSecurityGroups,
	"AuthorizeSecurityGroupIngress": (*Server).authorizeIngress,
	"RevokeSecurityGroupIngress":    (*Server).revokeIngress,
	"DeleteSecurityGroup":           (*Server).deleteSecurityGroup,
}

// Rule is one ingress or egress permission of a security group, as the fake keeps it: one source per
// rule.
type Rule struct {
	Protocol string // tcp, udp, icmp, icmpv6, -1
	FromPort int
	ToPort   int
	// One of CIDR, CIDRv6 and Group (a security group ID) is set.
	CIDR, CIDRv6, Group string
	Description         string
}

type securityGroup struct {
	id, name, description, vpc string
	ingress, egress            []Rule
	tags                       tags
}

type xmlPermission struct {
	Protocol string      `xml:"ipProtocol"`
	FromPort *int        `xml:"fromPort,omitempty"`
	ToPort   *int        `xml:"toPort,omitempty"`
	Groups   []xmlPair   `xml:"groups>item"`
	Ranges   []xmlRange  `xml:"ipRanges>item"`
	Ranges6  []xmlRange6 `xml:"ipv6Ranges>item"`
}

type xmlPair struct {
	GroupID     string `xml:"groupId"`
	UserID      string `xml:"userId"`
	Description string `xml:"description,omitempty"`
}

type xmlRange struct {
	CIDR        string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xmlRange6 struct {
	CIDR        string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type xmlGroup struct {
	ID          string          `xml:"groupId"`
	Name        string          `xml:"groupName"`
	Description string          `xml:"groupDescription"`
	VpcID       string          `xml:"vpcId"`
	OwnerID     string          `xml:"ownerId"`
	Ingress     []xmlPermission `xml:"ipPermissions>item"`
	Egress      []xmlPermission `xml:"ipPermissionsEgress>item"`
	Tags        []xmlTag        `xml:"tagSet>item"`
}

// permissionsXML groups rules by protocol and ports, as EC2 does.
func permissionsXML(rules []Rule) []xmlPermission {
	var out []xmlPermission
	index := map[string]int{}
	for _, r := range rules {
		key := fmt.Sprintf("%s/%d/%d", r.Protocol, r.FromPort, r.ToPort)
		i, ok := index[key]
		if !ok {
			perm := xmlPermission{Protocol: r.Protocol}
			if r.Protocol != "-1" {
				from, to := r.FromPort, r.ToPort
				perm.FromPort, perm.ToPort = &from, &to
			}
			out = append(out, perm)
			i = len(out) - 1
			index[key] = i
		}
		switch {
		case r.Group != "":
			out[i].Groups = append(out[i].Groups, xmlPair{GroupID: r.Group, UserID: AccountID, Description: r.Description})
		case r.CIDRv6 != "":
			out[i].Ranges6 = append(out[i].Ranges6, xmlRange6{CIDR: r.CIDRv6, Description: r.Description})
		default:
			out[i].Ranges = append(out[i].Ranges, xmlRange{CIDR: r.CIDR, Description: r.Description})
		}
	}
	return out
}

func (sg *securityGroup) xml() xmlGroup {
	return xmlGroup{ID: sg.id, Name: sg.name, Description: sg.description, VpcID: sg.vpc, OwnerID: AccountID,
		Ingress: permissionsXML(sg.ingress), Egress: permissionsXML(sg.egress), Tags: sg.tags.xml()}
}

func (s *Server) createSecurityGroup(p params) (any, error) {
	v, ok := s.ec2.vpcs[p.get("VpcId")]
	if !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
	}
	name := p.get("GroupName")
	if name == "" || strings.HasPrefix(name, "sg-") || len(name) > 255 {
		return nil, badRequest("InvalidParameterValue", "Invalid security group name %q", name)
	}
	if d := p.get("GroupDescription"); d == "" || len(d) > 255 {
		return nil, badRequest("InvalidParameterValue", "GroupDescription must be 1 to 255 characters")
	}
	for _, sg := range s.ec2.groups {
		if sg.vpc == v.id && sg.name == name {
			return nil, badRequest("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, v.id)
		}
	}
	t, err := tagsFrom(p, "security-group")
	if err != nil {
		return nil, err
	}
	sg := &securityGroup{id: s.id("sg"), name: name, description: p.get("GroupDescription"), vpc: v.id, tags: t,
		egress: []Rule{{Protocol: "-1", CIDR: "0.0.0.0/0"}}}
	s.ec2.groups[sg.id] = sg
	return &struct {
		ec2Meta
		ID   string   `xml:"groupId"`
		Tags []xmlTag `xml:"tagSet>item"`
	}{ID: sg.id, Tags: sg.tags.xml()}, nil
}

func (s *Server) describeSecurityGroups(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("GroupId")
	var out []xmlGroup
	for _, id := range sortedKeys(s.ec2.groups) {
		sg := s.ec2.groups[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, err := match(fs, sg.tags, map[string][]string{"vpc-id": {sg.vpc}, "group-name": {sg.name}, "group-id": {sg.id}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, sg.xml())
		}
	}
	for _, id := range ids {
		if _, ok := s.ec2.groups[id]; !ok {
			return nil, notFound("InvalidGroup.NotFound", "security group", id)
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Groups []xmlGroup `xml:"securityGroupInfo>item"`
		Next   string     `xml:"nextToken,omitempty"`
	}{Groups: out[from:to], Next: next}, nil
}

// rulesFrom reads IpPermissions.N into one rule per source.
func (s *Server) rulesFrom(p params, vpcID string) ([]Rule, error) {
	var out []Rule
	for _, perm := range p.items("IpPermissions") {
		proto := perm.get("IpProtocol")
		switch proto {
		case "tcp", "udp", "icmp", "icmpv6", "-1":
		case "6":
			proto = "tcp"
		case "17":
			proto = "udp"
		case "1":
			proto = "icmp"
		default:
			return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for IP protocol.", proto)
		}
		from, err := perm.int("FromPort", -1)
		if err != nil {
			return nil, err
		}
		to, err := perm.int("ToPort", -1)
		if err != nil {
			return nil, err
		}
		if proto == "tcp" || proto == "udp" {
			if from < 0 || to > 65535 || from > to {
				return nil, badRequest("InvalidParameterValue", "Invalid port range %d-%d for %s", from, to, proto)
			}
		}
		base := Rule{Protocol: proto, FromPort: from, ToPort: to}
		n := 0
		for _, r := range perm.items("IpRanges") {
			c, err := parseCIDR("cidrIp", r.get("CidrIp"))
			if err != nil {
				return nil, err
			}
			rule := base
			rule.CIDR, rule.Description = c.String(), r.get("Description")
			out = append(out, rule)
			n++
		}
		for _, r := range perm.items("Ipv6Ranges") {
			c, err := netip.ParsePrefix(r.get("CidrIpv6"))
			if err != nil || !c.Addr().Is6() {
				return nil, badRequest("InvalidParameterValue", "Value (%s) for parameter cidrIpv6 is invalid", r.get("CidrIpv6"))
			}
			rule := base
			rule.CIDRv6, rule.Description = c.String(), r.get("Description")
			out = append(out, rule)
			n++
		}
		for _, g := range perm.items("Groups") {
			src, ok := s.ec2.groups[g.get("GroupId")]
			if !ok {
				return nil, notFound("InvalidGroup.NotFound", "security group", g.get("GroupId"))
			}
			if src.vpc != vpcID {
				return nil, badRequest("InvalidParameterValue", "security group %s is in another VPC", src.id)
			}
			rule := base
			rule.Group, rule.Description = src.id, g.get("Description")
			out = append(out, rule)
			n++
		}
		if n == 0 {
			return nil, badRequest("MissingParameter", "a permission needs a source (IpRanges, Ipv6Ranges or Groups)")
		}
	}
	if len(out) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter ipPermissions")
	}
	return out, nil
}

func sameRule(a, b Rule) bool {
	return a.Protocol == b.Protocol && a.FromPort == b.FromPort && a.ToPort == b.ToPort &&
		a.CIDR == b.CIDR && a.CIDRv6 == b.CIDRv6 && a.Group == b.Group
}

// ingress reads the group GroupId names and the rules of IpPermissions.
func (s *Server) ingress(p params) (*securityGroup, []Rule, error) {
	sg, ok := s.ec2.groups[p.get("GroupId")]
	if !ok {
		return nil, nil, notFound("InvalidGroup.NotFound", "security group", p.get("GroupId"))
	}
	rules, err := s.rulesFrom(p, sg.vpc)
	if err != nil {
		return nil, nil, err
	}
	return sg, rules, nil
}

func (s *Server) authorizeIngress(p params) (any, error) {
	sg, rules, err := s.ingress(p)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if slices.ContainsFunc(sg.ingress, func(h Rule) bool { return sameRule(h, r) }) {
			return nil, badRequest("InvalidPermission.Duplicate", "the specified rule \"peer: %s%s%s, %s, from port: %d, to port: %d, ALLOW\" already exists", r.CIDR, r.CIDRv6, r.Group, r.Protocol, r.FromPort, r.ToPort)
		}
	}
	sg.ingress = append(sg.ingress, rules...)
	return okReturn(), nil
}

func (s *Server) revokeIngress(p params) (any, error) {
	sg, rules, err := s.ingress(p)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		i := slices.IndexFunc(sg.ingress, func(h Rule) bool { return sameRule(h, r) })
		if i < 0 {
			return nil, badRequest("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
		}
		sg.ingress = slices.Delete(sg.ingress, i, i+1)
	}
	return okReturn(), nil
}

func (s *Server) deleteSecurityGroup(p params) (any, error) {
	sg, ok := s.ec2.groups[p.get("GroupId")]
	if !ok {
		return nil, notFound("InvalidGroup.NotFound", "security group", p.get("GroupId"))
	}
	if sg.name == "default" {
		return nil, badRequest("CannotDelete", "the default security group cannot be deleted")
	}
	for _, other := range s.ec2.groups {
		if other.id == sg.id {
			continue
		}
		for _, r := range append(append([]Rule(nil), other.ingress...), other.egress...) {
			if r.Group == sg.id {
				return nil, badRequest("DependencyViolation", "resource %s has a dependent object (rule of %s)", sg.id, other.id)
			}
		}
	}
	for _, in := range s.ec2.instances {
		if in.State != "terminated" && slices.Contains(in.SecurityGroups, sg.id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object (instance %s)", sg.id, in.ID)
		}
	}
	for _, n := range s.ec2.enis {
		if slices.Contains(n.groups, sg.id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object (network interface %s)", sg.id, n.id)
		}
	}
	for _, lb := range s.elb.lbs {
		if slices.Contains(lb.groups, sg.id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object (load balancer %s)", sg.id, lb.name)
		}
	}
	delete(s.ec2.groups, sg.id)
	return okReturn(), nil
}
