package diagnose

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// fakeFacts is a node's state as a test sets it.
type fakeFacts struct {
	sysctl map[string]string
	progs  []Program
	neigh  string
	off    Offload
	vxlan  map[string]uint16
}

func (f fakeFacts) Sysctl(_ uint32, key string) (string, error) {
	if v, ok := f.sysctl[key]; ok {
		return v, nil
	}
	return "", errors.New("no such sysctl")
}
func (f fakeFacts) TCPrograms(uint32, string, string) ([]Program, error) { return f.progs, nil }
func (f fakeFacts) Neighbour(uint32, string, netip.Addr) (string, error) { return f.neigh, nil }
func (f fakeFacts) Offload(uint32, string) (Offload, error)              { return f.off, nil }
func (f fakeFacts) VXLANDevices(uint32) (map[string]uint16, error)       { return f.vxlan, nil }

const nodeNS = 4026532246

var (
	podIP = netip.MustParseAddr("10.0.1.2")
	extIP = netip.MustParseAddr("10.0.2.2")
)

func icmp(src, dst netip.Addr) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: src, Dst: dst, Sport: 7, Dport: 7}, IPID: 1}
}

// dropped is a packet that died in netns "node" on dev.
func dropped(dir trace.Direction, dev, reason, loc string, h *trace.Headers) trace.Packet {
	return trace.Packet{
		Flow: dir, Tuple: *h,
		Hops: []trace.Hop{
			{Event: trace.KindReceive, Place: trace.Place{Netns: nodeNS, NetnsName: "node", Ifname: dev}, Tuple: h},
			{Event: trace.KindRoute, Place: trace.Place{Netns: nodeNS, NetnsName: "node"}, Route: &trace.Route{Table: 254, TableName: "main", OutIfname: "veth-ext", Lookup: h.Tuple}},
			{Event: trace.KindDrop, Place: trace.Place{Netns: nodeNS, NetnsName: "node", Ifname: dev}, Tuple: h, Reason: reason, Location: loc},
		},
		Fate: trace.Fate{Outcome: trace.Dropped, Reason: reason, Location: loc, Place: trace.Place{Ifname: dev, Netns: nodeNS, NetnsName: "node"}},
	}
}

func verdictOf(facts Facts, nf []NetfilterDrop, ps ...trace.Packet) trace.Verdict {
	d := New(facts)
	for _, n := range nf {
		d.Netfilter(n)
	}
	for _, p := range ps {
		d.Observe(p)
	}
	f, _ := trace.NewFilter(netip.PrefixFrom(podIP, 32), netip.PrefixFrom(extIP, 32), trace.ProtoAny, 0, 0)
	return d.Verdict(&trace.Trace{Filter: f, Packets: ps})
}

func TestDropVerdicts(t *testing.T) {
	req := icmp(podIP, extIP)
	fwdDrop := dropped(trace.Request, "veth-pod", "IP_INADDRERRORS", "ip_error+0x94", req)
	cases := []struct {
		name       string
		v          trace.Verdict
		cause      string
		summary    string
		evidence   string
		fix        string
		confidence string
	}{
		{
			name:  "ip_forward off (incident 003)",
			v:     verdictOf(fakeFacts{sysctl: map[string]string{"net.ipv4.ip_forward": "0", "net.ipv4.conf.veth-pod.forwarding": "0"}}, nil, fwdDrop),
			cause: "forwarding disabled (net.ipv4.ip_forward=0)", summary: "the request was dropped in node veth-pod at ip_error+0x94 (IP_INADDRERRORS)",
			evidence: "net.ipv4.ip_forward=0", fix: "ip netns exec node sysctl -w net.ipv4.ip_forward=1", confidence: "high",
		},
		{
			name: "forwarding off on the uplink only (incident 000)",
			v: verdictOf(fakeFacts{sysctl: map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.veth-ext.forwarding": "0"}}, nil,
				dropped(trace.Reply, "veth-ext", "IP_INADDRERRORS", "ip_error+0x94", icmp(extIP, podIP))),
			cause: "forwarding disabled on veth-ext (net.ipv4.conf.veth-ext.forwarding=0)", summary: "the reply was dropped",
			evidence: "net.ipv4.conf.veth-ext.forwarding=0", fix: "sysctl -w net.ipv4.conf.veth-ext.forwarding=1", confidence: "high",
		},
		{
			name:  "forwarding on: unreachable",
			v:     verdictOf(fakeFacts{sysctl: map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.veth-pod.forwarding": "1"}}, nil, fwdDrop),
			cause: "no usable route to 10.0.2.2", evidence: "route lookup 10.0.1.2 > 10.0.2.2=table main: -> veth-ext", fix: "ip route get 10.0.2.2", confidence: "medium",
		},
		{
			name:  "no node state (a replay)",
			v:     verdictOf(nil, nil, fwdDrop),
			cause: "forwarding disabled or no route", fix: "net.ipv4.conf.veth-pod.forwarding=1", confidence: "medium",
		},
		{
			name: "netfilter rule named",
			v: verdictOf(fakeFacts{}, []NetfilterDrop{{Netns: nodeNS, Family: "inet", Table: "filter", Chain: "forward", Hook: "forward",
				Handle: 7, Rule: "ip saddr 10.0.1.2 drop", Src: podIP, Dst: extIP}},
				dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x9a", req)),
			cause: "netfilter rule inet filter forward handle 7", summary: `the rule "ip saddr 10.0.1.2 drop"`,
			evidence: "hook=forward", fix: "nft delete rule inet filter forward handle 7", confidence: "high",
		},
		{
			name: "netfilter policy",
			v: verdictOf(fakeFacts{}, []NetfilterDrop{{Netns: nodeNS, Family: "ip", Table: "filter", Chain: "FORWARD", Policy: true, Src: podIP, Dst: extIP}},
				dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x9a", req)),
			cause: "chain FORWARD policy drop", confidence: "high",
		},
		{
			name:  "netfilter rule not identified",
			v:     verdictOf(fakeFacts{}, nil, dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x9a", req)),
			cause: "netfilter rule", evidence: "rule=not identified", fix: "iptables-save", confidence: "medium",
		},
		{
			name: "Cilium policy program (incident 004)",
			v: verdictOf(fakeFacts{progs: []Program{{Name: "cil_from_container", ID: 42, Tag: "abcd", Kind: "tc", Direction: "ingress"}}}, nil,
				dropped(trace.Request, "veth-pod", "TC_INGRESS", "tcf_classify+0x1", req)),
			cause: "tc ingress program cil_from_container on veth-pod", summary: "Cilium's policy enforcement",
			evidence: "cil_from_container (id 42, tag abcd)", fix: "cilium monitor --type drop", confidence: "high",
		},
		{
			name: "VXLAN bad checksum (incident 001)",
			v: verdictOf(fakeFacts{off: Offload{TxChecksum: true, RxChecksum: true, Kind: "veth"}, vxlan: map[string]uint16{"flannel.1": 8472}}, nil,
				func() trace.Packet {
					p := dropped(trace.Request, "eth0", "UDP_CSUM", "__udp4_lib_rcv+0x1", req)
					p.Hops[2].Encap = "vxlan"
					p.Hops[2].Outer = &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: netip.MustParseAddr("192.168.1.1"), Dst: netip.MustParseAddr("192.168.1.2"), Sport: 4000, Dport: 8472}}
					return p
				}()),
			cause: "bad outer UDP checksum on VXLAN", summary: "--random-fully", evidence: "checksum offload on eth0=tx on, rx on (veth)",
			fix: "ethtool -K flannel.1 tx-checksum-ip-generic off", confidence: "high",
		},
		{
			name:  "neighbour failed",
			v:     verdictOf(fakeFacts{neigh: "FAILED"}, nil, dropped(trace.Request, "veth-ext", "NEIGH_FAILED", "__neigh_event_send+0x1", req)),
			cause: "next hop 10.0.2.2 not resolved", evidence: "neighbour entry=10.0.2.2 on veth-ext: FAILED", confidence: "high",
		},
		{
			name:  "nothing listening",
			v:     verdictOf(nil, nil, dropped(trace.Request, "eth0", "NO_SOCKET", "__udp4_lib_rcv+0x1", &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: podIP, Dst: extIP, Sport: 4000, Dport: 9}})),
			cause: "port unreachable: nothing listens on UDP port 9 in node", summary: "nothing listens on 10.0.2.2:9 there", fix: "ss -lunp 'sport = :9'", confidence: "high",
		},
		{
			name:    "a reason this code has never heard of",
			v:       verdictOf(nil, nil, dropped(trace.Request, "eth0", "SOME_NEW_REASON", "new_func+0x10", req)),
			summary: "the kernel's drop reason SOME_NEW_REASON (some new reason)", confidence: "medium",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.v
			if v.Outcome != "dropped" {
				t.Errorf("outcome %q, want dropped", v.Outcome)
			}
			if c.cause != "" && v.Cause != c.cause {
				t.Errorf("cause %q, want %q", v.Cause, c.cause)
			}
			if !strings.Contains(v.Summary, c.summary) {
				t.Errorf("summary %q lacks %q", v.Summary, c.summary)
			}
			var ev []string
			for _, e := range v.Evidence {
				ev = append(ev, e.What+"="+e.Value)
			}
			if c.evidence != "" && !strings.Contains(strings.Join(ev, "\n"), c.evidence) {
				t.Errorf("evidence %q lacks %q", ev, c.evidence)
			}
			if c.fix != "" && !strings.Contains(strings.Join(v.Fix, "\n"), c.fix) {
				t.Errorf("fix %q lacks %q", v.Fix, c.fix)
			}
			if v.Confidence != c.confidence {
				t.Errorf("confidence %q, want %q", v.Confidence, c.confidence)
			}
		})
	}
}

func TestOtherVerdicts(t *testing.T) {
	req, rep := icmp(podIP, extIP), icmp(extIP, podIP)
	delivered := func(dir trace.Direction, h *trace.Headers) trace.Packet {
		return trace.Packet{Flow: dir, Tuple: *h, Fate: trace.Fate{Outcome: trace.Delivered}}
	}
	left := func(src netip.Addr) trace.Packet {
		wire := icmp(src, extIP)
		return trace.Packet{Flow: trace.Request, Tuple: *req, Hops: []trace.Hop{
			{Event: trace.KindQueue, Place: trace.Place{NetnsName: "pod", Ifname: "eth0"}, Tuple: req},
			{Event: trace.KindQueue, Place: trace.Place{NetnsName: "host", Ifname: "eth0"}, Tuple: wire, Probe: "net:net_dev_queue"},
		}, Fate: trace.Fate{Outcome: trace.LeftHost, Place: trace.Place{Ifname: "eth0", NetnsName: "host"}}}
	}
	teardown := dropped(trace.Reply, "eth0", "QUEUE_PURGE", "sk_stream_kill_queues+0x57", rep)
	clone := dropped(trace.Request, "eth0", "OTHERHOST", "ip_rcv_core+0x1", req)
	clone.CopyOf = 1
	cases := []struct {
		name, outcome, cause, summary, fix string
		v                                  trace.Verdict
	}{
		{name: "no packets", outcome: "no-packets", summary: "no packet matched", v: verdictOf(nil, nil)},
		{name: "healthy", outcome: "delivered", summary: "healthy: 1 request and 1 reply", v: verdictOf(nil, nil, delivered(trace.Request, req), delivered(trace.Reply, rep))},
		{name: "teardown and clones are not the verdict", outcome: "delivered", summary: "2 freed as a socket closed",
			v: verdictOf(nil, nil, delivered(trace.Request, req), delivered(trace.Reply, rep), teardown, clone)},
		{name: "left with SNAT, no reply (incident 002)", outcome: "left-host", cause: "no reply",
			summary: "left on eth0 with source 192.168.1.10 (SNAT from 10.0.1.2 applied)", fix: "security groups",
			v: verdictOf(nil, nil, left(netip.MustParseAddr("192.168.1.10")))},
		{name: "left without SNAT, no reply", outcome: "left-host", cause: "missing SNAT",
			summary: "with its own source address 10.0.1.2 (no SNAT/MASQUERADE applied)", fix: "iptables -t nat -S POSTROUTING",
			v: verdictOf(nil, nil, left(podIP))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.v.Outcome != c.outcome || (c.cause != "" && c.v.Cause != c.cause) || !strings.Contains(c.v.Summary, c.summary) ||
				!strings.Contains(strings.Join(c.v.Fix, "\n"), c.fix) || c.v.Confidence == "" {
				t.Errorf("verdict %+v, want %s/%s with %q and fix %q", c.v, c.outcome, c.cause, c.summary, c.fix)
			}
		})
	}
}

// Packets left out by the budget (--max-rate) make the verdict's packets a sample: it says so,
// whatever the outcome, and not when none was left out or no packet was traced.
func TestVerdictOnASample(t *testing.T) {
	req, rep := icmp(podIP, extIP), icmp(extIP, podIP)
	drop := dropped(trace.Request, "veth-pod", "IP_INADDRERRORS", "ip_error+0x94", req)
	healthy := []trace.Packet{
		{Flow: trace.Request, Tuple: *req, Fate: trace.Fate{Outcome: trace.Delivered}},
		{Flow: trace.Reply, Tuple: *rep, Fate: trace.Fate{Outcome: trace.Delivered}},
	}
	f, _ := trace.NewFilter(netip.PrefixFrom(podIP, 32), netip.PrefixFrom(extIP, 32), trace.ProtoAny, 0, 0)
	for _, c := range []struct {
		name       string
		packets    []trace.Packet
		over, rate uint64
		outcome    string
		sample     string
	}{
		{"drop", []trace.Packet{drop}, 5000, 1000, "dropped", " (a sample: 5000 more matching packets were not traced, over the budget of 1000 new packets/s)"},
		{"healthy", healthy, 7, 1000, "delivered", " (a sample: 7 more matching packets were not traced, over the budget of 1000 new packets/s)"},
		{"budget unknown", []trace.Packet{drop}, 7, 0, "dropped", " (a sample: 7 more matching packets were not traced, over the budget)"},
		{"none left out", []trace.Packet{drop}, 0, 1000, "dropped", ""},
		{"no packets", nil, 3, 1000, "no-packets", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Verdict(&trace.Trace{Filter: f, Packets: c.packets, Meta: trace.Meta{MaxRate: c.rate, OverBudget: c.over}})
			if v.Outcome != c.outcome {
				t.Errorf("outcome %q, want %q", v.Outcome, c.outcome)
			}
			if c.sample != "" && !strings.HasSuffix(v.Summary, c.sample) {
				t.Errorf("summary %q does not end %q", v.Summary, c.sample)
			}
			if c.sample == "" && strings.Contains(v.Summary, "a sample") {
				t.Errorf("summary %q says it rests on a sample", v.Summary)
			}
		})
	}
}

// Every name the kernel can report gets an explanation, hand-written or spelled out.
func TestExplainEveryReason(t *testing.T) {
	for _, r := range []string{"NETFILTER_DROP", "IP_RPFILTER", "SOME_FUTURE_REASON", ""} {
		if Explain(r) == "" {
			t.Errorf("no explanation for %q", r)
		}
	}
	if got := Explain("TC_INGRESS"); !strings.Contains(got, "tc") {
		t.Errorf("TC_INGRESS: %q", got)
	}
}

// On a kernel with function hops the netfilter hook is known even when the rule is not.
func TestNetfilterHookFromFunctionHop(t *testing.T) {
	p := dropped(trace.Request, "veth-pod", "NETFILTER_DROP", "nf_hook_slow+0x9a", icmp(podIP, extIP))
	ret := int32(-1)
	p.Hops = append(p.Hops[:2], trace.Hop{Event: trace.KindFunc, Probe: "fexit:nf_hook_slow", Place: trace.Place{Netns: nodeNS, NetnsName: "node"},
		Func: &trace.Func{Name: "nf_hook_slow", Ret: &ret, Hook: "FORWARD", Family: "ipv4", Verdict: "DROP"}}, p.Hops[2])
	v := verdictOf(nil, nil, p)
	if v.Cause != "netfilter rule in the forward hook" || v.Confidence != "high" {
		t.Errorf("verdict %q (%s)", v.Cause, v.Confidence)
	}
	found := false
	for _, e := range v.Evidence {
		found = found || (e.What == "netfilter verdict" && e.Value == "FORWARD ipv4: DROP" && e.Source == "fexit:nf_hook_slow")
	}
	if !found {
		t.Errorf("evidence %+v lacks the hook's verdict", v.Evidence)
	}
}

// Before 5.17 a tc drop has no reason; the programs attached where it happened name it, as a
// guess.
func TestReasonlessTCDrop(t *testing.T) {
	facts := fakeFacts{progs: []Program{{Name: "cil_from_container", ID: 7, Tag: "ab", Kind: "tc", Direction: "ingress"}}}
	v := verdictOf(facts, nil, dropped(trace.Request, "veth-pod", "", "__netif_receive_skb_core+0x2f1", icmp(podIP, extIP)))
	if v.Cause != "tc ingress program cil_from_container on veth-pod" || v.Confidence != "medium" || !strings.Contains(v.Summary, "no specific drop reason") {
		t.Errorf("verdict %+v", v)
	}
	if v := verdictOf(fakeFacts{}, nil, dropped(trace.Request, "veth-pod", "", "__netif_receive_skb_core+0x2f1", icmp(podIP, extIP))); strings.HasPrefix(v.Cause, "tc ") {
		t.Errorf("no program attached, yet cause %q", v.Cause)
	}
}
