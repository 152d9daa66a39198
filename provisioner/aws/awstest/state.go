package awstest

import (
	"slices"
	"sort"
)

// What tests read back: the state the fake holds, as AWS would report it.

// Instances returns every instance, terminated ones included, in creation order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, id := range s.ec2.order {
		in := *s.ec2.instances[id]
		in.Tags = tags(in.Tags).clone()
		in.SecurityGroups = slices.Clone(in.SecurityGroups)
		out = append(out, in)
	}
	return out
}

// SecurityGroup is a security group as the fake keeps it.
type SecurityGroup struct {
	ID, Name, VPCID string
	Ingress, Egress []Rule
	Tags            map[string]string
}

// SecurityGroups returns every security group, by ID.
func (s *Server) SecurityGroups() map[string]SecurityGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]SecurityGroup{}
	for id, g := range s.ec2.groups {
		out[id] = SecurityGroup{ID: id, Name: g.name, VPCID: g.vpc, Ingress: slices.Clone(g.ingress),
			Egress: slices.Clone(g.egress), Tags: g.tags.clone()}
	}
	return out
}

// Targets returns the instance IDs registered with the target group of that name.
func (s *Server) Targets(targetGroup string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tg := range s.elb.groups {
		if tg.name == targetGroup {
			return sortedKeys(tg.targets)
		}
	}
	return nil
}

// Tagged returns the IDs (ARNs for load balancing) of every resource with tag key=value, sorted;
// terminated instances and deleted NAT gateways are not resources any more.
func (s *Server) Tagged(key, value string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	add := func(id string, t map[string]string) {
		if v, ok := t[key]; ok && v == value {
			out = append(out, id)
		}
	}
	for id, r := range s.ec2.vpcs {
		add(id, r.tags)
	}
	for id, r := range s.ec2.subnets {
		add(id, r.tags)
	}
	for id, r := range s.ec2.igws {
		add(id, r.tags)
	}
	for id, r := range s.ec2.addresses {
		add(id, r.tags)
	}
	for id, r := range s.ec2.nats {
		if r.state != "deleted" {
			add(id, r.tags)
		}
	}
	for id, r := range s.ec2.tables {
		add(id, r.tags)
	}
	for id, r := range s.ec2.groups {
		add(id, r.tags)
	}
	for id, r := range s.ec2.enis {
		add(id, r.tags)
	}
	for id, r := range s.ec2.instances {
		if r.State != "terminated" && r.State != "shutting-down" {
			add(id, r.Tags)
		}
	}
	for id, r := range s.elb.lbs {
		add(id, r.tags)
	}
	for id, r := range s.elb.groups {
		add(id, r.tags)
	}
	sort.Strings(out)
	return out
}

// Subnet is a subnet with its route table's default route.
type Subnet struct {
	ID, VPCID, AZ, CIDR string
	MapPublicIP         bool
	// DefaultRoute is the target of 0.0.0.0/0 in the subnet's route table (an igw- or nat- ID), empty
	// if it has none.
	DefaultRoute string
	Tags         map[string]string
}

// Subnets returns every subnet, sorted by ID.
func (s *Server) Subnets() []Subnet {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Subnet
	for _, id := range sortedKeys(s.ec2.subnets) {
		sn := s.ec2.subnets[id]
		x := Subnet{ID: id, VPCID: sn.vpc, AZ: sn.az, CIDR: sn.cidr.String(), MapPublicIP: sn.mapPublicIP, Tags: sn.tags.clone()}
		for _, rt := range s.ec2.tables {
			for _, a := range rt.associations {
				if a.subnet != id {
					continue
				}
				for _, r := range rt.routes {
					if r.dest == "0.0.0.0/0" {
						x.DefaultRoute = r.gateway + r.nat
					}
				}
			}
		}
		out = append(out, x)
	}
	return out
}

// LoadBalancer is a load balancer with its listeners' ports and the target groups they forward to.
type LoadBalancer struct {
	Name, Scheme, Type, VPCID string
	Subnets, SecurityGroups   []string
	// Listeners maps a port to the name of the target group it forwards to.
	Listeners map[int]string
}

// LoadBalancers returns every load balancer by name.
func (s *Server) LoadBalancers() map[string]LoadBalancer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]LoadBalancer{}
	for _, lb := range s.elb.lbs {
		x := LoadBalancer{Name: lb.name, Scheme: lb.scheme, Type: lb.typ, VPCID: lb.vpc, Subnets: slices.Clone(lb.subnets),
			SecurityGroups: slices.Clone(lb.groups), Listeners: map[int]string{}}
		for _, l := range s.elb.listeners {
			if l.lb == lb.arn {
				if tg := s.elb.groups[l.target]; tg != nil {
					x.Listeners[l.port] = tg.name
				}
			}
		}
		out[lb.name] = x
	}
	return out
}
