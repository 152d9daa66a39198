package firewall

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Kinds of Difference.
const (
	// Missing: the intent has the rule or chain, the node does not.
	Missing = "missing"
	// Extra: the node has the rule or chain, the intent does not.
	Extra = "extra"
	// Changed: the node's chain has another hook, type, priority or policy.
	Changed = "changed"
)

// Difference is one way in which a node's ruleset is not the intent's.
type Difference struct {
	Kind string `json:"kind"`
	// Chain is the chain of table inet kiln_filter it is in; empty for the table itself.
	Chain string `json:"chain,omitempty"`
	// Rule is the rule in a canonical form (sets sorted, addresses as networks, no comment), or what
	// differs about a chain or table.
	Rule string `json:"rule"`
	// Why is the rule's comment: the intent's for a missing rule, the node's for an extra one.
	Why string `json:"why,omitempty"`
}

// Comparison is the result of Compare.
type Comparison struct {
	// Differences between the node's table inet kiln_filter and the intent, sorted by chain, then
	// kind, then rule.
	Differences []Difference `json:"differences"`
	// Rules is how many rules of the intent's form the node's table holds.
	Rules int `json:"rules"`
	// OtherTables are the node's other tables ("family name"). They are not compared: a packet must
	// be accepted by every base chain of its hook, so another table can drop more but never accept
	// what kiln's table drops.
	OtherTables []string `json:"otherTables,omitempty"`
}

// fixedRule is a rule that Nftables writes into every ruleset, in canonical form.
type fixedRule struct {
	chain, canon, why string
}

// fixedInput and fixedOutput are the canonical forms of the rules Nftables writes before the rules of
// the intent, in the input chain and (with outbound rules) the output chain.
var (
	fixedInput = []fixedRule{
		{"input", "ct state established,related accept", "replies, and ICMP errors of known connections"},
		{"input", "ct state invalid drop", "packets of no valid connection"},
		{"input", "meta iif lo accept", "loopback"},
		{"input", "icmpv6 type {nd-neighbor-advert, nd-neighbor-solicit, nd-router-advert} ip6 hoplimit 255 accept", "IPv6 router and neighbor discovery, from the link only"},
		{"input", "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept", "DHCPv6 replies on the link"},
	}
	fixedOutput = []fixedRule{
		{"output", "ct state established,related accept", "replies to accepted connections, and ICMP errors of known connections"},
		{"output", "meta oif lo accept", "loopback"},
		{"output", "icmpv6 type {nd-neighbor-advert, nd-neighbor-solicit, nd-router-solicit} ip6 hoplimit 255 accept", "IPv6 router and neighbor discovery, on the link only"},
		{"output", "icmpv6 type {mld-listener-report, mld2-listener-report} ip6 hoplimit 1 accept", "IPv6 multicast listener reports, on the link only"},
		{"output", "udp sport 68 udp dport 67 accept", "DHCPv4 requests"},
		{"output", "ip6 daddr ff02::1:2/128 udp sport 546 udp dport 547 accept", "DHCPv6 requests on the link"},
	}
)

// Canonical returns the rules that Nftables(rules, role) compiles, in the canonical form that
// Compare reads a node's ruleset into, each with its chain ("input" or "output") and comment.
func Canonical(rules []Rule) []Difference {
	var out []Difference
	add := func(fs []fixedRule) {
		for _, f := range fs {
			out = append(out, Difference{Chain: f.chain, Rule: f.canon, Why: f.why})
		}
	}
	add(fixedInput)
	hasOut := false
	for _, r := range rules {
		if r.Direction == Out {
			hasOut = true
		}
	}
	if hasOut {
		add(fixedOutput)
	}
	for _, r := range rules {
		chain, nets, dir := "input", r.From, "saddr"
		if r.Direction == Out {
			chain, nets, dir = "output", r.To, "daddr"
		}
		var v4, v6 []string
		for _, p := range nets {
			p = unmap(p)
			if p.Addr().Is4() {
				v4 = append(v4, p.String())
			} else {
				v6 = append(v6, p.String())
			}
		}
		for _, fam := range []struct {
			name, icmp string
			addrs      []string
		}{{"ip", "icmp type echo-request", v4}, {"ip6", "icmpv6 type echo-request", v6}} {
			if len(fam.addrs) == 0 {
				continue
			}
			parts := []string{fam.name + " " + dir + " " + canonSet(fam.addrs)}
			switch r.Proto {
			case ICMP:
				parts = append(parts, fam.icmp)
			case Any:
			case VRRP:
				parts = append(parts, "meta l4proto "+strconv.Itoa(ProtoNumberVRRP))
			default:
				parts = append(parts, string(r.Proto)+" dport "+r.Ports.String())
			}
			parts = append(parts, "accept")
			out = append(out, Difference{Chain: chain, Rule: strings.Join(parts, " "), Why: r.Why})
		}
	}
	return out
}

// canonSet writes values sorted, in braces when there are more than one.
func canonSet(vs []string) string {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	if len(vs) == 1 {
		return vs[0]
	}
	return "{" + strings.Join(vs, ", ") + "}"
}

// nftJSON is the part of `nft -j list ruleset` output that Compare reads.
type nftJSON struct {
	Nftables []struct {
		Table *struct {
			Family string `json:"family"`
			Name   string `json:"name"`
		} `json:"table"`
		Chain *struct {
			Family string `json:"family"`
			Table  string `json:"table"`
			Name   string `json:"name"`
			Type   string `json:"type"`
			Hook   string `json:"hook"`
			Prio   *int   `json:"prio"`
			Policy string `json:"policy"`
		} `json:"chain"`
		Rule *struct {
			Family  string            `json:"family"`
			Table   string            `json:"table"`
			Chain   string            `json:"chain"`
			Comment string            `json:"comment"`
			Expr    []json.RawMessage `json:"expr"`
		} `json:"rule"`
	} `json:"nftables"`
}

// Compare reads a node's ruleset, the output of `nft -j list ruleset`, and compares its table inet
// kiln_filter with what Nftables(rules, ...) compiles: the input chain (hook input, type filter,
// priority 0, policy drop), the output chain when rules has outbound rules (else there must be none),
// and every rule of each, in the canonical form of Canonical. Rule order and comments are not
// compared, nor are counters. It returns an error only when live is not nft's JSON.
func Compare(rules []Rule, live []byte) (Comparison, error) {
	var doc nftJSON
	if err := json.Unmarshal(live, &doc); err != nil {
		return Comparison{}, fmt.Errorf("firewall: the node's ruleset is not `nft -j list ruleset` output: %w", err)
	}
	var cmp Comparison
	want := Canonical(rules)
	wantChains := map[string]bool{"input": true}
	for _, w := range want {
		wantChains[w.Chain] = true
	}

	ours := func(family, table string) bool { return family == "inet" && table == Table }
	haveTable := false
	haveChains := map[string]bool{}
	var got []Difference
	for _, item := range doc.Nftables {
		switch {
		case item.Table != nil:
			if ours(item.Table.Family, item.Table.Name) {
				haveTable = true
			} else {
				cmp.OtherTables = append(cmp.OtherTables, item.Table.Family+" "+item.Table.Name)
			}
		case item.Chain != nil && ours(item.Chain.Family, item.Chain.Table):
			ch := item.Chain
			haveChains[ch.Name] = true
			if !wantChains[ch.Name] {
				cmp.Differences = append(cmp.Differences, Difference{Kind: Extra, Chain: ch.Name, Rule: "chain " + ch.Name + describeChain(ch.Type, ch.Hook, ch.Prio, ch.Policy)})
				continue
			}
			prio := -1
			if ch.Prio != nil {
				prio = *ch.Prio
			}
			if ch.Type != "filter" || ch.Hook != ch.Name || prio != 0 || ch.Policy != "drop" {
				cmp.Differences = append(cmp.Differences, Difference{Kind: Changed, Chain: ch.Name,
					Rule: "chain " + ch.Name + describeChain(ch.Type, ch.Hook, ch.Prio, ch.Policy) + ", want type filter hook " + ch.Name + " priority 0 policy drop"})
			}
		case item.Rule != nil && ours(item.Rule.Family, item.Rule.Table):
			got = append(got, Difference{Chain: item.Rule.Chain, Rule: canonRule(item.Rule.Expr), Why: item.Rule.Comment})
		}
	}
	if !haveTable {
		cmp.Differences = append(cmp.Differences, Difference{Kind: Missing, Rule: "table inet " + Table + ": the node has no kiln firewall"})
		return cmp, nil
	}
	for name := range wantChains {
		if !haveChains[name] {
			cmp.Differences = append(cmp.Differences, Difference{Kind: Missing, Chain: name, Rule: "chain " + name})
		}
	}

	// Multisets of chain+rule.
	count := map[string]int{}
	key := func(d Difference) string { return d.Chain + "\x00" + d.Rule }
	for _, g := range got {
		count[key(g)]++
	}
	cmp.Rules = len(got)
	for _, w := range want {
		if count[key(w)] > 0 {
			count[key(w)]--
			continue
		}
		cmp.Differences = append(cmp.Differences, Difference{Kind: Missing, Chain: w.Chain, Rule: w.Rule, Why: w.Why})
	}
	for _, g := range got {
		if count[key(g)] > 0 {
			count[key(g)]--
			cmp.Differences = append(cmp.Differences, Difference{Kind: Extra, Chain: g.Chain, Rule: g.Rule, Why: g.Why})
		}
	}
	slices.SortStableFunc(cmp.Differences, func(a, b Difference) int {
		return strings.Compare(a.Chain+"\x00"+a.Kind+"\x00"+a.Rule, b.Chain+"\x00"+b.Kind+"\x00"+b.Rule)
	})
	slices.Sort(cmp.OtherTables)
	return cmp, nil
}

func describeChain(typ, hook string, prio *int, policy string) string {
	if hook == "" {
		return " (a regular chain)"
	}
	p := "?"
	if prio != nil {
		p = strconv.Itoa(*prio)
	}
	return fmt.Sprintf(" (type %s hook %s priority %s policy %s)", typ, hook, p, policy)
}

// canonRule writes a rule's expressions in the canonical form: "ip saddr {10.0.0.0/16, 192.0.2.1/32}
// tcp dport 22 accept". Counters are left out; an expression it does not know is written as its JSON.
func canonRule(exprs []json.RawMessage) string {
	var parts []string
	for _, raw := range exprs {
		var e map[string]json.RawMessage
		if err := json.Unmarshal(raw, &e); err != nil || len(e) != 1 {
			parts = append(parts, string(raw))
			continue
		}
		for k, v := range e {
			switch k {
			case "counter":
			case "accept", "drop", "return", "continue":
				parts = append(parts, k)
			case "match":
				parts = append(parts, canonMatch(v))
			default:
				parts = append(parts, k+" "+string(v))
			}
		}
	}
	return strings.Join(parts, " ")
}

func canonMatch(raw json.RawMessage) string {
	var m struct {
		Op    string          `json:"op"`
		Left  json.RawMessage `json:"left"`
		Right json.RawMessage `json:"right"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "match " + string(raw)
	}
	var left struct {
		Payload *struct{ Protocol, Field string } `json:"payload"`
		Ct      *struct{ Key string }             `json:"ct"`
		Meta    *struct{ Key string }             `json:"meta"`
	}
	l := string(m.Left)
	addr := false
	if json.Unmarshal(m.Left, &left) == nil {
		switch {
		case left.Payload != nil:
			l = left.Payload.Protocol + " " + left.Payload.Field
			addr = left.Payload.Field == "saddr" || left.Payload.Field == "daddr"
		case left.Ct != nil:
			l = "ct " + left.Ct.Key
		case left.Meta != nil:
			l = "meta " + left.Meta.Key
		}
	}
	op := ""
	if m.Op != "==" && m.Op != "in" {
		op = m.Op + " "
	}
	v := canonValue(m.Right, addr)
	if l == "meta l4proto" {
		// nft lists a protocol by the name /etc/protocols gives it, if the node has one.
		if n, ok := protoNumbers[v]; ok {
			v = strconv.Itoa(n)
		}
	}
	return l + " " + op + v
}

// protoNumbers are the IP protocols, by the names nft may list them with, that rules match by number.
var protoNumbers = map[string]int{"vrrp": ProtoNumberVRRP}

// canonValue writes a match's right-hand side: a set sorted in braces, a prefix or an address (when
// addr) as a network, a range as a-b, a list (ct state's flags) joined by commas.
func canonValue(raw json.RawMessage, addr bool) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if addr {
			if a, err := netip.ParseAddr(s); err == nil {
				return netip.PrefixFrom(a, a.BitLen()).String()
			}
		}
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		var vs []string
		for _, v := range list {
			vs = append(vs, canonValue(v, addr))
		}
		slices.Sort(vs)
		return strings.Join(vs, ",")
	}
	var obj struct {
		Set    []json.RawMessage `json:"set"`
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []json.RawMessage `json:"range"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		switch {
		case obj.Set != nil:
			var vs []string
			for _, v := range obj.Set {
				vs = append(vs, canonValue(v, addr))
			}
			return canonSet(vs)
		case obj.Prefix != nil:
			if a, err := netip.ParseAddr(obj.Prefix.Addr); err == nil {
				return netip.PrefixFrom(a, obj.Prefix.Len).String()
			}
			return obj.Prefix.Addr + "/" + strconv.Itoa(obj.Prefix.Len)
		case len(obj.Range) == 2:
			return canonValue(obj.Range[0], addr) + "-" + canonValue(obj.Range[1], addr)
		}
	}
	return string(raw)
}
