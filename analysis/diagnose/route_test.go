package diagnose

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// routeFake is fakeFacts with the node's routing decisions, per namespace.
type routeFake struct {
	fakeFacts
	dec      map[uint32]RouteDecision
	err      error
	queries  []RouteQuery
	counters map[string]uint64
}

func (f *routeFake) Counters(uint32) (map[string]uint64, error) {
	if f.counters == nil {
		return nil, errors.New("no counters")
	}
	return f.counters, nil
}

func (f *routeFake) RouteDecision(netns uint32, q RouteQuery) (RouteDecision, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return RouteDecision{}, f.err
	}
	return f.dec[netns], nil
}

var forwardingOn = fakeFacts{sysctl: map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.veth-pod.forwarding": "1"}}

// unreachableDrop is a forwarded request dropped in ip_error after a lookup that failed.
func unreachableDrop(errno int32, reason string) trace.Packet {
	p := dropped(trace.Request, "veth-pod", reason, "ip_error+0x94", icmp(podIP, extIP))
	p.Hops[1].Route = &trace.Route{Table: 254, TableName: "main", Err: errno, Lookup: p.Tuple.Tuple, Iif: 3}
	return p
}

type verdictWant struct {
	class, outcome, cause, confidence string
	summary, evidence, fix            []string
}

func checkV(t *testing.T, v trace.Verdict, w verdictWant) {
	t.Helper()
	if w.class != "" && v.Class != w.class {
		t.Errorf("class %q, want %q (%s)", v.Class, w.class, v.Summary)
	}
	if w.outcome != "" && v.Outcome != w.outcome {
		t.Errorf("outcome %q, want %q", v.Outcome, w.outcome)
	}
	if !strings.Contains(v.Cause, w.cause) {
		t.Errorf("cause %q lacks %q", v.Cause, w.cause)
	}
	if w.confidence != "" && v.Confidence != w.confidence {
		t.Errorf("confidence %q, want %q", v.Confidence, w.confidence)
	}
	for _, s := range w.summary {
		if !strings.Contains(v.Summary, s) {
			t.Errorf("summary lacks %q: %s", s, v.Summary)
		}
	}
	var ev []string
	for _, e := range v.Evidence {
		ev = append(ev, e.What+"="+e.Value)
	}
	for _, s := range w.evidence {
		if !strings.Contains(strings.Join(ev, "\n"), s) {
			t.Errorf("evidence lacks %q: %q", s, ev)
		}
	}
	for _, s := range w.fix {
		if !strings.Contains(strings.Join(v.Fix, "\n"), s) {
			t.Errorf("fix lacks %q: %q", s, v.Fix)
		}
	}
}

func TestRouteVerdicts(t *testing.T) {
	unreachable := RouteDecision{Route: "unreachable 10.0.2.2", Type: "unreachable", Prefix: "10.0.2.2", Table: 254, Errno: "EHOSTUNREACH", Exact: true}
	ruled := RouteDecision{Route: "unreachable default table 100", Type: "unreachable", Prefix: "default", Table: 100,
		Rule: "100: from 10.0.1.2 lookup 100", RulePref: 100, Errno: "EHOSTUNREACH", Exact: true}
	cases := []struct {
		name  string
		facts Facts
		p     trace.Packet
		want  verdictWant
	}{
		{
			name:  "unreachable route named, with its del",
			facts: &routeFake{fakeFacts: forwardingOn, dec: map[uint32]RouteDecision{nodeNS: unreachable}},
			p:     unreachableDrop(-113, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "unreachable route 10.0.2.2", confidence: "high",
				summary:  []string{"matches the route `unreachable 10.0.2.2` in node", "ICMP host unreachable"},
				evidence: []string{"route=unreachable 10.0.2.2", "kernel route lookup=ip route get 10.0.2.2 from 10.0.1.2 iif veth-pod: EHOSTUNREACH", "EHOSTUNREACH (an unreachable route)"},
				fix:      []string{"ip netns exec node ip route del unreachable 10.0.2.2   #"}},
		},
		{
			name:  "the rule that chose the table",
			facts: &routeFake{fakeFacts: forwardingOn, dec: map[uint32]RouteDecision{nodeNS: ruled}},
			p:     unreachableDrop(-113, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "unreachable route default table 100", confidence: "high",
				summary:  []string{"in the table `ip rule` `100: from 10.0.1.2 lookup 100` chose"},
				evidence: []string{"ip rule=100: from 10.0.1.2 lookup 100"},
				fix:      []string{"ip route del unreachable default table 100", "ip rule del pref 100", "table 100"}},
		},
		{
			name: "a rule that decides itself (prohibit)",
			facts: &routeFake{fakeFacts: forwardingOn, dec: map[uint32]RouteDecision{nodeNS: {Type: "prohibit", RuleAction: "prohibit",
				Rule: "50: from 10.0.1.2 to 10.0.2.2 prohibit", RulePref: 50, Errno: "EACCES", Exact: true}}},
			p: unreachableDrop(-13, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "ip rule 50: from 10.0.1.2 to 10.0.2.2 prohibit", confidence: "high",
				summary:  []string{"before any routing table is looked up, and its action is prohibit", "administratively prohibited"},
				evidence: []string{"ip rule=50: from 10.0.1.2 to 10.0.2.2 prohibit", "EACCES"},
				fix:      []string{"ip netns exec node ip rule del pref 50"}},
		},
		{
			name:  "walk and kernel disagree: not sure",
			facts: &routeFake{fakeFacts: forwardingOn, dec: map[uint32]RouteDecision{nodeNS: {Route: "blackhole 10.0.2.0/24", Type: "blackhole", Prefix: "10.0.2.0/24", Table: 254, Errno: "EHOSTUNREACH"}}},
			p:     unreachableDrop(-113, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "blackhole route 10.0.2.0/24", confidence: "medium",
				evidence: []string{"does not agree with the kernel's lookup"}},
		},
		{
			name:  "replay: the trace's lookup only",
			facts: nil,
			p:     unreachableDrop(-113, "NOT_SPECIFIED"),
			want:  verdictWant{class: "forwarding", cause: "forwarding disabled or no route"},
		},
		{
			name:  "node state unreadable",
			facts: &routeFake{fakeFacts: forwardingOn, err: errors.New("netns gone")},
			p:     unreachableDrop(-22, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "a blackhole route for 10.0.2.2", confidence: "medium",
				summary: []string{"could not be read"}, evidence: []string{"route decision=netns gone"}},
		},
		{
			name:  "facts without route reading",
			facts: forwardingOn,
			p:     unreachableDrop(-13, "NOT_SPECIFIED"),
			want: verdictWant{class: "route", cause: "a prohibit route for 10.0.2.2",
				summary: []string{"not read live on the node"}, fix: []string{"ip route get 10.0.2.2 from 10.0.1.2 iif veth-pod"}},
		},
		{
			name: "IPv6 prohibit at ip6_pkt_prohibit",
			facts: &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Route: "prohibit fd00::/64 dev lo", Type: "prohibit", Prefix: "fd00::/64",
				Table: 254, Errno: "EACCES", Exact: true}}},
			p: dropped(trace.Request, "veth-pod", "IP_INNOROUTES", "ip6_pkt_prohibit+0x14",
				icmp(netip.MustParseAddr("fd01::2"), netip.MustParseAddr("fd00::2"))),
			want: verdictWant{class: "route", cause: "prohibit route fd00::/64", confidence: "high",
				fix: []string{"ip -6 route del prohibit fd00::/64"}},
		},
		{
			name:  "no route at all, locally sent",
			facts: &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Errno: "ENETUNREACH", Exact: true}}},
			p:     dropped(trace.Request, "", "IP_OUTNOROUTES", "ip_route_output_flow+0x5", icmp(podIP, extIP)),
			want:  verdictWant{class: "route", cause: "no route to 10.0.2.2", confidence: "high", fix: []string{"ip route add 10.0.2.2 via <gateway>"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkV(t, verdictOf(c.facts, nil, c.p), c.want)
		})
	}
}

func TestRouteQueryIsAnInputLookup(t *testing.T) {
	f := &routeFake{fakeFacts: forwardingOn, dec: map[uint32]RouteDecision{}}
	verdictOf(f, nil, unreachableDrop(-113, "NOT_SPECIFIED"))
	if len(f.queries) != 1 || f.queries[0].IifName != "veth-pod" || f.queries[0].Src != podIP || f.queries[0].Dst != extIP {
		t.Fatalf("queries %+v, want one input lookup from %s on veth-pod", f.queries, podIP)
	}
}

func TestMTUVerdicts(t *testing.T) {
	h := &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: podIP, Dst: extIP, Sport: 4000, Dport: 53}}
	p := dropped(trace.Request, "veth-pod", "PKT_TOO_BIG", "ip_forward+0x2c0", h)
	p.Hops[2].Len = 1428
	live := &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Route: "10.0.2.0/24 dev veth-ext", Dev: "veth-ext", LinkMTU: 1280, Table: 254, Exact: true}},
		counters: map[string]uint64{"IcmpMsgOutType3": 2}}
	checkV(t, verdictOf(live, nil, p), verdictWant{class: "mtu", confidence: "high",
		cause:    "packet of 1428 bytes too big for the MTU 1280 of veth-ext",
		summary:  []string{"fragmentation needed", "back to 10.0.1.2", "not that ICMP error", "The node counted 2 sent (IcmpMsgOutType3)"},
		evidence: []string{"packet size=1428", "mtu of veth-ext=1280", "IcmpMsgOutType3 in node=2"},
		fix:      []string{"ip netns exec node ip link set dev veth-ext mtu 1428", "MSS"}})

	locked := &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Route: "10.0.2.0/24 dev veth-ext mtu lock 1400", Dev: "veth-ext", LinkMTU: 1500, RouteMTU: 1400, MTULock: true}},
		counters: map[string]uint64{}}
	checkV(t, verdictOf(locked, nil, p), verdictWant{class: "mtu", cause: "the MTU 1400 of veth-ext", evidence: []string{"route mtu=lock 1400"},
		summary: []string{"counter IcmpMsgOutType3 is 0: no such ICMP error went out"}})

	// A replay: the size and the trace's route, no MTU.
	checkV(t, verdictOf(nil, nil, p), verdictWant{class: "mtu", confidence: "medium", cause: "packet too big for the MTU of veth-ext"})

	// No reason (5.10): too big only when the node's MTU says so.
	q := p
	q.Hops = append([]trace.Hop(nil), p.Hops...)
	q.Hops[2].Reason, q.Fate.Reason = "", ""
	checkV(t, verdictOf(live, nil, q), verdictWant{class: "mtu", cause: "too big for the MTU 1280"})
	big := &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Dev: "veth-ext", LinkMTU: 9000}}}
	checkV(t, verdictOf(big, nil, q), verdictWant{class: "mtu", cause: "dropped while forwarding (this kernel gives no reason)", confidence: "medium"})
}

// loopPacket went round node and ext before its TTL ran out in node.
func loopPacket(reason string) trace.Packet {
	dst := netip.MustParseAddr("10.0.9.9")
	h := icmp(podIP, dst)
	const extNS = 4026532999
	node := func(dev string) trace.Place { return trace.Place{Netns: nodeNS, NetnsName: "node", Ifname: dev} }
	ext := trace.Place{Netns: extNS, NetnsName: "ext", Ifname: "eth0"}
	hops := []trace.Hop{{Event: trace.KindReceive, Place: node("veth-pod"), Tuple: h}}
	for i := 0; i < 3; i++ {
		hops = append(hops,
			trace.Hop{Event: trace.KindXmit, Place: node("veth-ext"), Tuple: h},
			trace.Hop{Event: trace.KindReceive, Place: ext, Tuple: h},
			trace.Hop{Event: trace.KindXmit, Place: ext, Tuple: h},
			trace.Hop{Event: trace.KindReceive, Place: node("veth-ext"), Tuple: h})
	}
	hops = append(hops, trace.Hop{Event: trace.KindDrop, Place: node("veth-ext"), Tuple: h, Reason: reason, Location: "ip_forward+0x2c0"})
	return trace.Packet{Flow: trace.Request, Tuple: *h, Hops: hops,
		Fate: trace.Fate{Outcome: trace.Dropped, Reason: reason, Location: "ip_forward+0x2c0", Place: node("veth-ext")}}
}

func TestLoopVerdicts(t *testing.T) {
	live := &routeFake{dec: map[uint32]RouteDecision{
		nodeNS:     {Route: "10.0.9.0/24 via 10.0.2.2 dev veth-ext", Prefix: "10.0.9.0/24", Gw: netip.MustParseAddr("10.0.2.2"), Table: 254},
		4026532999: {Route: "10.0.9.0/24 via 10.0.2.1 dev eth0", Prefix: "10.0.9.0/24", Gw: netip.MustParseAddr("10.0.2.1"), Table: 254},
	}}
	want := verdictWant{class: "loop", cause: "routing loop between", confidence: "high",
		summary:  []string{"node routes it `10.0.9.0/24 via 10.0.2.2 dev veth-ext`", "ext routes it `10.0.9.0/24 via 10.0.2.1 dev eth0`", "TTL ran out in node"},
		evidence: []string{"places seen more than once=ext eth0, node veth-ext (up to 3 times)"},
		fix:      []string{"ip netns exec node ip route del 10.0.9.0/24 via 10.0.2.2", "ip netns exec ext ip route del 10.0.9.0/24 via 10.0.2.1"}}
	checkV(t, verdictOf(live, nil, loopPacket("IP_INHDR")), want)
	// 5.10: no reason, the loop is seen in the hops all the same.
	checkV(t, verdictOf(live, nil, loopPacket("")), verdictWant{class: "loop", cause: "routing loop between"})
	// A replay: the places, no routes.
	checkV(t, verdictOf(nil, nil, loopPacket("IP_INHDR")), verdictWant{class: "loop", cause: "routing loop between ext and node", fix: []string{"one of these routes is wrong"}})

	// TTL ran out with no place seen twice: not called a loop.
	p := dropped(trace.Request, "veth-pod", "IP_INHDR", "ip_forward+0x2c0", icmp(podIP, extIP))
	v := verdictOf(live, nil, p)
	checkV(t, v, verdictWant{class: "loop", cause: "TTL exceeded", fix: []string{"traceroute 10.0.2.2"}})
	if strings.Contains(v.Cause, "loop") || v.Confidence == "high" {
		t.Errorf("a TTL running out with no place seen twice is told as a loop, or surely: %+v", v)
	}
}

func TestNotSent(t *testing.T) {
	podNS := uint32(4026532111)
	lookup := trace.Hop{Event: trace.KindRoute, Place: trace.Place{Netns: podNS, NetnsName: "pod"},
		Route: &trace.Route{Table: 254, TableName: "main", Err: -11, Lookup: trace.Tuple{Src: netip.IPv4Unspecified(), Dst: extIP}}}
	live := &routeFake{dec: map[uint32]RouteDecision{podNS: {Errno: "ENETUNREACH", Exact: true}}}
	d := New(live)
	d.RouteLookup(lookup)
	f, _ := trace.NewFilter(netip.PrefixFrom(podIP, 32), netip.PrefixFrom(extIP, 32), trace.ProtoAny, 0, 0)
	v := d.Verdict(&trace.Trace{Filter: f})
	checkV(t, v, verdictWant{class: "not-sent", outcome: "not-sent", cause: "no route to 10.0.2.2 in pod", confidence: "high",
		summary: []string{"no packet was made", "ENETUNREACH"}, evidence: []string{"table main: error -11 EAGAIN"},
		fix: []string{"ip netns exec pod ip route add 10.0.2.2 via <gateway>"}})

	// A replay has no lookups: no packets is all it can say.
	if v := Verdict(&trace.Trace{Filter: f}); v.Outcome != "no-packets" {
		t.Errorf("replay without packets: %+v", v)
	}
	// A successful lookup is not a failure.
	d = New(nil)
	ok := lookup
	ok.Route = &trace.Route{Table: 254, Lookup: lookup.Route.Lookup, OutIfname: "eth0"}
	d.RouteLookup(ok)
	if v := d.Verdict(&trace.Trace{Filter: f}); v.Outcome != "no-packets" {
		t.Errorf("a successful lookup and no packet: %+v", v)
	}
}

func TestWrongExitNamesTheRoute(t *testing.T) {
	h := icmp(podIP, extIP)
	node := func(dev string) trace.Place { return trace.Place{Netns: nodeNS, NetnsName: "node", Ifname: dev} }
	p := trace.Packet{Flow: trace.Request, Tuple: *h, Hops: []trace.Hop{
		{Event: trace.KindXmit, Place: trace.Place{Netns: 1, NetnsName: "pod", Ifname: "eth0"}, Tuple: h},
		{Event: trace.KindReceive, Place: node("veth-pod"), Tuple: h},
		{Event: trace.KindXmit, Place: node("veth-void"), Tuple: h},
	}, Fate: trace.Fate{Outcome: trace.LeftHost, Place: node("veth-void")}}
	wrong := &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Route: "10.0.2.2 via 10.0.3.9 dev veth-void", Prefix: "10.0.2.2", Dev: "veth-void",
		Gw: netip.MustParseAddr("10.0.3.9"), Table: 254, Covering: []string{"10.0.2.0/24 dev veth-ext"}, CoveringDevs: []string{"veth-ext"}}}}
	v := verdictOf(wrong, nil, p)
	checkV(t, v, verdictWant{class: "left-host", outcome: "left-host", cause: "exit by veth-void",
		summary:  []string{"overrides the connected route `10.0.2.0/24 dev veth-ext`", "on the link of veth-ext"},
		evidence: []string{"route that chose veth-void=10.0.2.2 via 10.0.3.9 dev veth-void", "overridden route=10.0.2.0/24 dev veth-ext"},
		fix:      []string{"ip netns exec node ip route del 10.0.2.2 via 10.0.3.9"}})
	if len(wrong.queries) != 1 || wrong.queries[0].IifName != "veth-pod" {
		t.Errorf("queries %+v, want an input lookup on veth-pod", wrong.queries)
	}

	// The route is the only one for the destination: named, nothing called wrong.
	right := &routeFake{dec: map[uint32]RouteDecision{nodeNS: {Route: "default via 10.0.3.9 dev veth-void", Prefix: "default", Dev: "veth-void", Table: 254}}}
	v = verdictOf(right, nil, p)
	checkV(t, v, verdictWant{class: "left-host", summary: []string{"on the route `default via 10.0.3.9 dev veth-void` in node"}})
	if strings.Contains(v.Cause, "exit") {
		t.Errorf("a route with nothing it overrides is called a wrong exit: %+v", v)
	}
}
