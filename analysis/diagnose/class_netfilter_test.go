package diagnose

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// legacyNode is a node whose namespace has legacy iptables tables, traced by nftables
// unless untraced.
type legacyNode struct {
	fakeFacts
	tables   []string
	untraced bool
	rules    []LegacyRule
}

func (l legacyNode) LegacyIptables(uint32, bool) ([]string, error) { return l.tables, nil }
func (l legacyNode) NftablesTraced(uint32) bool                    { return !l.untraced }
func (l legacyNode) LegacyIptablesRules(uint32, string, bool) ([]LegacyRule, error) {
	return l.rules, nil
}

func evidenceSource(v trace.Verdict, what string) string {
	for _, e := range v.Evidence {
		if e.What == what {
			return e.Source
		}
	}
	return ""
}

func tcp(src, dst netip.Addr, dport uint16) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoTCP, Src: src, Dst: dst, Sport: 40000, Dport: dport}, IPID: 1}
}

func evidenceOf(v trace.Verdict, what string) string {
	for _, e := range v.Evidence {
		if e.What == what {
			return e.Value
		}
	}
	return ""
}

func TestNetfilterIptablesCtInvalid(t *testing.T) {
	kube := NetfilterDrop{Netns: nodeNS, Family: "ip", Table: "filter", Chain: "KUBE-FORWARD", Hook: "forward", Handle: 4,
		Rule:     "xt match conntrack --ctstate INVALID counter packets 1 bytes 40 drop",
		Iptables: "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP", Src: podIP, Dst: extIP}
	p := dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nft_do_chain+0x46f", tcp(podIP, extIP, 8080))
	facts := fakeFacts{sysctl: map[string]string{"net.netfilter.nf_conntrack_tcp_loose": "0"}}
	v := verdictOf(facts, []NetfilterDrop{kube}, p)
	if !strings.Contains(v.Cause, "conntrack judged the packet INVALID") || !strings.HasPrefix(v.Cause, "netfilter rule ip filter KUBE-FORWARD handle 4") || v.Class != "conntrack" {
		t.Errorf("cause %q class %q", v.Cause, v.Class)
	}
	if r := evidenceOf(v, "rule"); !strings.HasPrefix(r, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP (iptables table filter") {
		t.Errorf("rule evidence %q", r)
	}
	if evidenceOf(v, "net.netfilter.nf_conntrack_tcp_loose") != "0" {
		t.Errorf("evidence %+v lacks nf_conntrack_tcp_loose", v.Evidence)
	}
	fix := strings.Join(v.Fix, "\n")
	for _, want := range []string{"ip netns exec node iptables -t filter -D KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP", "nft delete rule ip filter KUBE-FORWARD handle 4", "nf_conntrack_tcp_loose=1"} {
		if !strings.Contains(fix, want) {
			t.Errorf("fix %q lacks %q", v.Fix, want)
		}
	}
	// A replay has no node to read: the rule and its state are still told.
	v = verdictOf(nil, []NetfilterDrop{kube}, p)
	if !strings.Contains(v.Cause, "conntrack judged the packet INVALID") || strings.Contains(strings.Join(v.Fix, "\n"), "tcp_loose") {
		t.Errorf("replay: cause %q fix %q", v.Cause, v.Fix)
	}
	// A rule that drops what is NOT invalid says nothing of INVALID.
	other := kube
	other.Iptables, other.Rule = "-A KUBE-FORWARD -m conntrack ! --ctstate INVALID -j DROP", "xt match conntrack ! --ctstate INVALID drop"
	if v := verdictOf(nil, []NetfilterDrop{other}, p); strings.Contains(v.Cause, "INVALID") || v.Class != "netfilter" {
		t.Errorf("negated state: cause %q class %q", v.Cause, v.Class)
	}
	// The trace's own state wins: established is told as such.
	est := kube
	est.Iptables, est.CtState, est.CtDirection = "-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j DROP", "established", "reply"
	v = verdictOf(nil, []NetfilterDrop{est}, p)
	if !strings.Contains(v.Cause, "conntrack state ESTABLISHED") || evidenceOf(v, "conntrack state") != "established (reply direction)" {
		t.Errorf("established: cause %q evidence %+v", v.Cause, v.Evidence)
	}
}

func TestNetfilterPolicyNewFlow(t *testing.T) {
	pol := NetfilterDrop{Netns: nodeNS, Family: "inet", Table: "filter", Chain: "forward", Hook: "forward", Policy: true, CtState: "new", CtDirection: "original", Src: podIP, Dst: extIP}
	v := verdictOf(fakeFacts{}, []NetfilterDrop{pol}, dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nft_do_chain+0x637", icmp(podIP, extIP)))
	if v.Cause != "chain forward policy drop: conntrack state new" || !strings.Contains(v.Summary, "first packet of a new flow from 10.0.1.2") {
		t.Errorf("cause %q summary %q", v.Cause, v.Summary)
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), "nft insert rule inet filter forward ip saddr 10.0.1.2 accept") {
		t.Errorf("fix %q", v.Fix)
	}
}

func TestNetfilterLegacy(t *testing.T) {
	p := dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x7d", icmp(podIP, extIP))
	v := verdictOf(legacyNode{tables: []string{"filter"}}, nil, p)
	if !strings.Contains(v.Cause, "no nftables rule matched: legacy iptables (iptables-legacy-save would show it)") || v.Confidence == "high" {
		t.Errorf("legacy: cause %q (%s)", v.Cause, v.Confidence)
	}
	if evidenceOf(v, "legacy iptables tables") != "filter" || !strings.Contains(strings.Join(v.Fix, "\n"), "ip netns exec node iptables-legacy-save -c") {
		t.Errorf("legacy: evidence %+v fix %q", v.Evidence, v.Fix)
	}
	// The one legacy DROP rule that counted packets is named, with its hook.
	v = verdictOf(legacyNode{tables: []string{"filter"}, rules: []LegacyRule{
		{Table: "filter", Chain: "FORWARD", Hook: "forward", Spec: "-A FORWARD -s 10.0.1.2/32 -j DROP", Target: "DROP", Packets: 2},
		{Table: "filter", Chain: "FORWARD", Hook: "forward", Spec: "-A FORWARD -s 10.0.9.9/32 -j DROP", Target: "DROP"},
		{Table: "filter", Chain: "INPUT", Hook: "input", Spec: "-A INPUT -j ACCEPT", Target: "ACCEPT", Packets: 9},
	}}, nil, p)
	if !strings.HasPrefix(v.Cause, "a netfilter drop in hook forward; no nftables rule matched") ||
		evidenceOf(v, "legacy rule that drops and counted packets") != "-A FORWARD -s 10.0.1.2/32 -j DROP (table filter, 2 packets)" ||
		!strings.Contains(strings.Join(v.Fix, "\n"), "iptables-legacy -t filter -D FORWARD -s 10.0.1.2/32 -j DROP") {
		t.Errorf("legacy rule: cause %q evidence %+v fix %q", v.Cause, v.Evidence, v.Fix)
	}
	// IPv6: ip6tables-legacy's rule, with its own tools.
	p6 := dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x7d", icmp(netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:2::2")))
	v = verdictOf(legacyNode{tables: []string{"filter"}, rules: []LegacyRule{
		{Table: "filter", Chain: "FORWARD", Hook: "forward", Spec: "-A FORWARD -s fd00:1::2/128 -j DROP", Target: "DROP", Packets: 2},
	}}, nil, p6)
	if !strings.HasPrefix(v.Cause, "a netfilter drop in hook forward; no nftables rule matched: legacy iptables (ip6tables-legacy-save would show it)") ||
		!strings.Contains(evidenceSource(v, "legacy rule that drops and counted packets"), "ip6tables-legacy counters (IP6T_SO_GET_ENTRIES)") ||
		!strings.Contains(strings.Join(v.Fix, "\n"), "ip6tables-legacy -t filter -D FORWARD -s fd00:1::2/128 -j DROP") {
		t.Errorf("legacy IPv6 rule: cause %q evidence %+v fix %q", v.Cause, v.Evidence, v.Fix)
	}
	// Without nftables tracing there, legacy is not claimed: either is told.
	v = verdictOf(legacyNode{tables: []string{"filter"}, untraced: true}, nil, p)
	if strings.Contains(v.Cause, "no nftables rule matched") || !strings.Contains(v.Cause, "legacy iptables or nftables") ||
		!strings.Contains(strings.Join(v.Fix, "\n"), "nft -a list ruleset") {
		t.Errorf("untraced legacy: cause %q fix %q", v.Cause, v.Fix)
	}
	// No legacy table: not called legacy.
	v = verdictOf(legacyNode{}, nil, p)
	if strings.Contains(v.Cause, "legacy") || !strings.Contains(evidenceOf(v, "rule"), "no legacy iptables tables") {
		t.Errorf("no legacy: cause %q evidence %+v", v.Cause, v.Evidence)
	}
	// Freed by nf_tables: an nftables rule, even with legacy tables about.
	v = verdictOf(legacyNode{tables: []string{"filter"}}, nil, dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nft_do_chain+0x46f", icmp(podIP, extIP)))
	if strings.Contains(v.Cause, "legacy") || !strings.Contains(v.Cause, "nftables rule") {
		t.Errorf("nft_do_chain: cause %q", v.Cause)
	}
}

// A drop in conntrack's own code with no rule is conntrack's, never a rule's or legacy's.
func TestConntrackOwnDrop(t *testing.T) {
	v := verdictOf(legacyNode{tables: []string{"filter"}}, nil, dropped(trace.Request, "veth-pod", "", "nf_conntrack_in+0x1f0", icmp(podIP, extIP)))
	if v.Class != "conntrack" || !strings.HasPrefix(v.Cause, "conntrack dropped the packet itself (nf_conntrack_in)") || strings.Contains(v.Cause, "legacy") {
		t.Errorf("class %q cause %q", v.Class, v.Cause)
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), "conntrack -S") {
		t.Errorf("fix %q", v.Fix)
	}
}
