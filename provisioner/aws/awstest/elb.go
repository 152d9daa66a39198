package awstest

import (
	"fmt"
	"slices"
	"time"
)

type elbState struct {
	lbs       map[string]*loadBalancer // by ARN
	groups    map[string]*targetGroup  // by ARN
	listeners map[string]*listener     // by ARN
}

func (e *elbState) init() {
	e.lbs = map[string]*loadBalancer{}
	e.groups = map[string]*targetGroup{}
	e.listeners = map[string]*listener{}
}

type loadBalancer struct {
	arn, name, scheme, typ, vpc, dns string
	subnets, groups                  []string
	created                          time.Time
	tags                             tags
}

type targetGroup struct {
	arn, name, protocol, vpc, targetType string
	port                                 int
	targets                              map[string]int // instance ID -> port
	tags                                 tags
}

type listener struct {
	arn, lb, protocol, target string
	port                      int
}

// ELB answers use PascalCase elements and <member> lists.

type xmlLB struct {
	ARN       string   `xml:"LoadBalancerArn"`
	Name      string   `xml:"LoadBalancerName"`
	DNSName   string   `xml:"DNSName"`
	Zone      string   `xml:"CanonicalHostedZoneId"`
	Created   string   `xml:"CreatedTime"`
	Scheme    string   `xml:"Scheme"`
	VpcID     string   `xml:"VpcId"`
	State     string   `xml:"State>Code"`
	Type      string   `xml:"Type"`
	AZs       []xmlAZ  `xml:"AvailabilityZones>member"`
	Groups    []string `xml:"SecurityGroups>member"`
	IPAddress string   `xml:"IpAddressType"`
}

type xmlAZ struct {
	Zone   string `xml:"ZoneName"`
	Subnet string `xml:"SubnetId"`
}

type xmlTG struct {
	ARN        string   `xml:"TargetGroupArn"`
	Name       string   `xml:"TargetGroupName"`
	Protocol   string   `xml:"Protocol"`
	Port       int      `xml:"Port"`
	VpcID      string   `xml:"VpcId"`
	TargetType string   `xml:"TargetType"`
	LBs        []string `xml:"LoadBalancerArns>member"`
	HCProtocol string   `xml:"HealthCheckProtocol"`
	HCPort     string   `xml:"HealthCheckPort"`
	HCEnabled  bool     `xml:"HealthCheckEnabled"`
}

type xmlListener struct {
	ARN      string      `xml:"ListenerArn"`
	LB       string      `xml:"LoadBalancerArn"`
	Port     int         `xml:"Port"`
	Protocol string      `xml:"Protocol"`
	Actions  []xmlAction `xml:"DefaultActions>member"`
}

type xmlAction struct {
	Type        string `xml:"Type"`
	TargetGroup string `xml:"TargetGroupArn"`
}

type xmlELBTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

func (s *Server) lbXML(lb *loadBalancer) xmlLB {
	x := xmlLB{ARN: lb.arn, Name: lb.name, DNSName: lb.dns, Zone: "Z26RNL4JYFTOTI", Created: lb.created.UTC().Format(timeFormat),
		Scheme: lb.scheme, VpcID: lb.vpc, State: "active", Type: lb.typ, Groups: lb.groups, IPAddress: "ipv4"}
	for _, id := range lb.subnets {
		if sn := s.ec2.subnets[id]; sn != nil {
			x.AZs = append(x.AZs, xmlAZ{Zone: sn.az, Subnet: id})
		}
	}
	return x
}

func (s *Server) tgXML(tg *targetGroup) xmlTG {
	x := xmlTG{ARN: tg.arn, Name: tg.name, Protocol: tg.protocol, Port: tg.port, VpcID: tg.vpc, TargetType: tg.targetType,
		HCProtocol: "TCP", HCPort: "traffic-port", HCEnabled: true}
	for _, l := range s.elb.listeners {
		if l.target == tg.arn && !slices.Contains(x.LBs, l.lb) {
			x.LBs = append(x.LBs, l.lb)
		}
	}
	return x
}

func elbTags(p params) (tags, error) {
	t := tags{}
	for _, tag := range p.items("Tags") {
		k := tag.get("Key")
		if k == "" {
			return nil, badRequest("ValidationError", "a tag key must not be empty")
		}
		t[k] = tag.get("Value")
	}
	return t, nil
}

var elbActions = actions{
	"CreateLoadBalancer":    (*Server).createLoadBalancer,
	"DescribeLoadBalancers": (*Server).describeLoadBalancers,
	"DeleteLoadBalancer":    (*Server).deleteLoadBalancer,
	"CreateTargetGroup":     (*Server).createTargetGroup,
	"DescribeTargetGroups":  (*Server).describeTargetGroups,
	"DeleteTargetGroup":     (*Server).deleteTargetGroup,
	"CreateListener":        (*Server).createListener,
	"DescribeListeners":     (*Server).describeListeners,
	"DeleteListener":        (*Server).deleteListener,
	"RegisterTargets":       (*Server).registerTargets,
	"DeregisterTargets":     (*Server).deregisterTargets,
	"DescribeTargetHealth":  (*Server).describeTargetHealth,
	"DescribeTags":          (*Server).describeELBTags,
}

// elbAction answers one Elastic Load Balancing action with the server's lock held.
func (s *Server) elbAction(action string, p params) (any, error) {
	h, found := elbActions[action]
	if !found {
		return nil, badRequest("InvalidAction", "Could not find operation %s for version 2015-12-01", action)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return h(s, p)
}

func (s *Server) describeLoadBalancers(p params) (any, error) {
	names := p.list("Names")
	var out []xmlLB
	for _, arn := range sortedKeys(s.elb.lbs) {
		lb := s.elb.lbs[arn]
		if len(names) == 0 || slices.Contains(names, lb.name) {
			out = append(out, s.lbXML(lb))
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(out, func(x xmlLB) bool { return x.Name == n }) {
			return nil, badRequest("LoadBalancerNotFound", "Load balancers '[%s]' not found", n)
		}
	}
	return struct {
		LBs []xmlLB `xml:"LoadBalancers>member"`
	}{out}, nil
}

func (s *Server) deleteLoadBalancer(p params) (any, error) {
	arn := p.get("LoadBalancerArn")
	if _, ok := s.elb.lbs[arn]; ok {
		for k, l := range s.elb.listeners {
			if l.lb == arn {
				delete(s.elb.listeners, k)
			}
		}
		delete(s.elb.lbs, arn)
	}
	return nil, nil
}

func (s *Server) describeTargetGroups(p params) (any, error) {
	names := p.list("Names")
	lbArn := p.get("LoadBalancerArn")
	var out []xmlTG
	for _, arn := range sortedKeys(s.elb.groups) {
		x := s.tgXML(s.elb.groups[arn])
		if (len(names) == 0 || slices.Contains(names, x.Name)) && (lbArn == "" || slices.Contains(x.LBs, lbArn)) {
			out = append(out, x)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(out, func(x xmlTG) bool { return x.Name == n }) {
			return nil, badRequest("TargetGroupNotFound", "One or more target groups not found")
		}
	}
	return struct {
		TGs []xmlTG `xml:"TargetGroups>member"`
	}{out}, nil
}

func (s *Server) deleteTargetGroup(p params) (any, error) {
	arn := p.get("TargetGroupArn")
	for _, l := range s.elb.listeners {
		if l.target == arn {
			return nil, badRequest("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
		}
	}
	delete(s.elb.groups, arn)
	return nil, nil
}

func (s *Server) describeListeners(p params) (any, error) {
	lbArn := p.get("LoadBalancerArn")
	if _, ok := s.elb.lbs[lbArn]; !ok {
		return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", lbArn)
	}
	var out []xmlListener
	for _, arn := range sortedKeys(s.elb.listeners) {
		l := s.elb.listeners[arn]
		if l.lb == lbArn {
			out = append(out, xmlListener{ARN: l.arn, LB: l.lb, Port: l.port, Protocol: l.protocol,
				Actions: []xmlAction{{Type: "forward", TargetGroup: l.target}}})
		}
	}
	return struct {
		Listeners []xmlListener `xml:"Listeners>member"`
	}{out}, nil
}

func (s *Server) deleteListener(p params) (any, error) {
	arn := p.get("ListenerArn")
	if _, ok := s.elb.listeners[arn]; !ok {
		return nil, badRequest("ListenerNotFound", "Listener '%s' not found", arn)
	}
	delete(s.elb.listeners, arn)
	return nil, nil
}

func (s *Server) describeTargetHealth(p params) (any, error) {
	tg, ok := s.elb.groups[p.get("TargetGroupArn")]
	if !ok {
		return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", p.get("TargetGroupArn"))
	}
	type target struct {
		ID   string `xml:"Target>Id"`
		Port int    `xml:"Target>Port"`
		// The fake runs no health checks: a registered running instance is healthy.
		State string `xml:"TargetHealth>State"`
	}
	var out []target
	for _, id := range sortedKeys(tg.targets) {
		state := "unused"
		if in := s.ec2.instances[id]; in != nil && in.State == "running" {
			state = "healthy"
		}
		out = append(out, target{ID: id, Port: tg.targets[id], State: state})
	}
	return struct {
		Targets []target `xml:"TargetHealthDescriptions>member"`
	}{out}, nil
}

func (s *Server) describeELBTags(p params) (any, error) {
	type desc struct {
		ARN  string      `xml:"ResourceArn"`
		Tags []xmlELBTag `xml:"Tags>member"`
	}
	var out []desc
	for _, arn := range p.list("ResourceArns") {
		var t tags
		if lb, ok := s.elb.lbs[arn]; ok {
			t = lb.tags
		} else if tg, ok := s.elb.groups[arn]; ok {
			t = tg.tags
		} else {
			return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", arn)
		}
		d := desc{ARN: arn}
		for _, kv := range t.xml() {
			d.Tags = append(d.Tags, xmlELBTag(kv))
		}
		out = append(out, d)
	}
	return struct {
		Descs []desc `xml:"TagDescriptions>member"`
	}{out}, nil
}

func (s *Server) createLoadBalancer(p params) (any, error) {
	name := p.get("Name")
	if name == "" || len(name) > 32 {
		return nil, badRequest("ValidationError", "Load balancer name %q must be 1 to 32 characters", name)
	}
	for _, lb := range s.elb.lbs {
		if lb.name == name {
			return nil, badRequest("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
		}
	}
	typ := p.get("Type")
	if typ == "" {
		typ = "application"
	}
	scheme := p.get("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	subnets := p.list("Subnets")
	if len(subnets) == 0 {
		return nil, badRequest("ValidationError", "At least one subnet must be specified")
	}
	var vpcID string
	azs := map[string]bool{}
	for _, id := range subnets {
		sn, ok := s.ec2.subnets[id]
		if !ok {
			return nil, badRequest("SubnetNotFound", "The subnet ID '%s' is not valid", id)
		}
		if vpcID != "" && sn.vpc != vpcID {
			return nil, badRequest("InvalidSubnet", "subnets are in different VPCs")
		}
		if azs[sn.az] {
			return nil, badRequest("InvalidConfigurationRequest", "A load balancer cannot be attached to multiple subnets in the same Availability Zone")
		}
		azs[sn.az] = true
		vpcID = sn.vpc
		if scheme == "internet-facing" && !s.routesToIGW(sn.id) {
			return nil, badRequest("InvalidSubnet", "VPC %s has no internet gateway route in subnet %s", vpcID, sn.id)
		}
	}
	groups := p.list("SecurityGroups")
	for _, g := range groups {
		sg, ok := s.ec2.groups[g]
		if !ok || sg.vpc != vpcID {
			return nil, badRequest("InvalidSecurityGroup", "Security group '%s' does not exist in the VPC", g)
		}
	}
	t, err := elbTags(p)
	if err != nil {
		return nil, err
	}
	s.next++
	id := fmt.Sprintf("%016x", 0xfeed0000+s.next)
	lb := &loadBalancer{
		arn:  "arn:aws:elasticloadbalancing:" + Region + ":" + AccountID + ":loadbalancer/net/" + name + "/" + id,
		name: name, scheme: scheme, typ: typ, vpc: vpcID, subnets: subnets, groups: groups, created: s.now(), tags: t,
		dns: name + "-" + id[8:] + ".elb." + Region + ".amazonaws.com",
	}
	s.elb.lbs[lb.arn] = lb
	return struct {
		LBs []xmlLB `xml:"LoadBalancers>member"`
	}{[]xmlLB{s.lbXML(lb)}}, nil
}

// routesToIGW reports whether the subnet's route table sends 0.0.0.0/0 to an internet gateway.
func (s *Server) routesToIGW(subnetID string) bool {
	for _, rt := range s.ec2.tables {
		for _, a := range rt.associations {
			if a.subnet != subnetID {
				continue
			}
			for _, r := range rt.routes {
				if r.dest == "0.0.0.0/0" && r.gateway != "" && r.gateway != "local" {
					return true
				}
			}
		}
	}
	return false
}

func (s *Server) createTargetGroup(p params) (any, error) {
	name := p.get("Name")
	if name == "" || len(name) > 32 {
		return nil, badRequest("ValidationError", "Target group name %q must be 1 to 32 characters", name)
	}
	for _, tg := range s.elb.groups {
		if tg.name == name {
			return nil, badRequest("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
		}
	}
	if _, ok := s.ec2.vpcs[p.get("VpcId")]; !ok {
		return nil, badRequest("ValidationError", "The VPC ID '%s' is not found", p.get("VpcId"))
	}
	port, err := p.int("Port", 0)
	if err != nil {
		return nil, err
	}
	if port < 1 || port > 65535 {
		return nil, badRequest("ValidationError", "Port %d is not from 1 to 65535", port)
	}
	t, err := elbTags(p)
	if err != nil {
		return nil, err
	}
	s.next++
	tg := &targetGroup{
		arn:  "arn:aws:elasticloadbalancing:" + Region + ":" + AccountID + ":targetgroup/" + name + "/" + fmt.Sprintf("%016x", 0xbeef0000+s.next),
		name: name, protocol: p.get("Protocol"), port: port, vpc: p.get("VpcId"), targetType: p.get("TargetType"),
		targets: map[string]int{}, tags: t,
	}
	if tg.targetType == "" {
		tg.targetType = "instance"
	}
	s.elb.groups[tg.arn] = tg
	return struct {
		TGs []xmlTG `xml:"TargetGroups>member"`
	}{[]xmlTG{s.tgXML(tg)}}, nil
}

func (s *Server) createListener(p params) (any, error) {
	lb, ok := s.elb.lbs[p.get("LoadBalancerArn")]
	if !ok {
		return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", p.get("LoadBalancerArn"))
	}
	port, err := p.int("Port", 0)
	if err != nil {
		return nil, err
	}
	actions := p.items("DefaultActions")
	if len(actions) != 1 || actions[0].get("Type") != "forward" {
		return nil, badRequest("ValidationError", "the fake takes one forward action")
	}
	tg, ok := s.elb.groups[actions[0].get("TargetGroupArn")]
	if !ok {
		return nil, badRequest("TargetGroupNotFound", "Target group '%s' not found", actions[0].get("TargetGroupArn"))
	}
	for _, l := range s.elb.listeners {
		if l.lb == lb.arn && l.port == port {
			return nil, badRequest("DuplicateListener", "A listener already exists on this port for this load balancer")
		}
	}
	s.next++
	l := &listener{lb: lb.arn,
		protocol: p.get("Protocol"), port: port, target: tg.arn}
	l.arn = "arn:aws:elasticloadbalancing:" + Region + ":" + AccountID + ":listener/net/" + lb.name + "/" + fmt.Sprintf("%016x", 0xcafe0000+s.next)
	s.elb.listeners[l.arn] = l
	return struct {
		Listeners []xmlListener `xml:"Listeners>member"`
	}{[]xmlListener{{ARN: l.arn, LB: l.lb, Port: l.port, Protocol: l.protocol, Actions: []xmlAction{{Type: "forward", TargetGroup: tg.arn}}}}}, nil
}

func (s *Server) registerTargets(p params) (any, error) { return s.changeTargets(true, p) }

func (s *Server) deregisterTargets(p params) (any, error) { return s.changeTargets(false, p) }

// changeTargets registers, or deregisters, the Targets of the target group TargetGroupArn names.
func (s *Server) changeTargets(register bool, p params) (any, error) {
	tg, ok := s.elb.groups[p.get("TargetGroupArn")]
	if !ok {
		return nil, badRequest("TargetGroupNotFound", "Target group '%s' not found", p.get("TargetGroupArn"))
	}
	targets := p.items("Targets")
	if len(targets) == 0 {
		return nil, badRequest("ValidationError", "Targets must not be empty")
	}
	for _, t := range targets {
		id := t.get("Id")
		port, err := t.int("Port", tg.port)
		if err != nil {
			return nil, err
		}
		if !register {
			delete(tg.targets, id)
			continue
		}
		in, ok := s.ec2.instances[id]
		if !ok || in.VPCID != tg.vpc {
			return nil, badRequest("InvalidTarget", "The following targets are not in the target group's VPC '%s': '%s'", tg.vpc, id)
		}
		if in.State != "running" {
			return nil, badRequest("InvalidTarget", "The following targets are not in a running state and cannot be registered: '%s'", id)
		}
		tg.targets[id] = port
	}
	return nil, nil
}

// deregisterEverywhere removes a terminated instance from every target group, as ELB does.
func (s *Server) deregisterEverywhere(id string) {
	for _, tg := range s.elb.groups {
		delete(tg.targets, id)
	}
}
