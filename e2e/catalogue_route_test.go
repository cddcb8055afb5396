package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Routing, MTU and loop scenarios: the node routes the flow somewhere it cannot go.
//
// Their wants name no drop reason: the reasons of ip_forward, ip6_forward, ip_error and
// ip6_pkt_drop came in different releases (6.18 says PKT_TOO_BIG, IP_INHDR, IP_INNOROUTES or
// NOT_SPECIFIED; older kernels NOT_SPECIFIED or none), and the classes tell these drops by the
// function, the trace and the node's state. The summary carries whatever reason the kernel gave.

// netOf is the lab's second octet (10.<net>.x.y), to make addresses beside the lab's own.
func netOf(s *scenarioLab) uint8 { return s.PodIP.As4()[1] }

// sendDF sends count UDP datagrams of size payload bytes from the pod to dst with DF set.
func sendDF(s *scenarioLab, dst string, size, count int) func(t *testing.T) {
	return func(t *testing.T) {
		for i := 0; i < count; i++ {
			if err := s.Pod.SendUDPDF(dst, 5353, size); err != nil {
				t.Logf("send: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = addScenario(scenario{
	name:  "route/unreachable-v4",
	about: "an `unreachable` host route for the destination in the node's main table",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.AddTypedRoute("unreachable", s.ExtIP.String()+"/32", 0))
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "unreachable route 10.",
		evidence: []evidence{{"route", "unreachable 10."}, {"kernel route lookup", "EHOSTUNREACH"}},
		fix:      "ip route del unreachable 10.",
		summary:  []string{"matches the route `unreachable 10."},
	},
})

var _ = addScenario(scenario{
	name:  "route/prohibit-v6",
	about: "a `prohibit` route for the destination's /64 in the node (IPv6)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		p := netip.PrefixFrom(netip.MustParseAddr(s.Ext6), 120).Masked()
		must(t, s.Node.AddTypedRoute("prohibit", p.String(), 0))
		return []string{"--src", s.Pod6, "--dst", s.Ext6, "--proto", "icmp"}, pingFromPod(s, s.Ext6, 2)
	},
	want: want{
		v6: true, outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "prohibit route fd00:",
		evidence: []evidence{{"route", "prohibit fd00:"}},
		fix:      "ip -6 route del prohibit fd00:",
	},
})

var _ = addScenario(scenario{
	name:  "route/blackhole-v4",
	about: "a `blackhole` route for the destination's subnet in the node",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.AddTypedRoute("blackhole", fmt.Sprintf("10.%d.2.0/28", netOf(s)), 0))
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "blackhole route 10.",
		evidence: []evidence{{"route", "blackhole 10."}},
		fix:      "ip route del blackhole 10.",
	},
})

var _ = addScenario(scenario{
	name:  "route/no-route-pod",
	about: "the pod has no default route (a CNI that did not finish): its own sends fail with ENETUNREACH",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Pod.DelRoute("0.0.0.0/0"))
		// A process of the pod sends (SendUDP writes from a thread in the pod's namespace).
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "udp"}, func(t *testing.T) {
			for i := 0; i < 2; i++ {
				err := s.Pod.SendUDP(s.ExtIP.String(), 0, 5353, []byte("hello"))
				t.Logf("send: %v", err)
				if err == nil {
					t.Error("the pod without a route could send")
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	},
	want: want{
		outcome: "not-sent", class: "not-sent", netns: "pod",
		cause:    "no route to 10.",
		evidence: []evidence{{"kernel route lookup", "ENETUNREACH"}},
		fix:      "route add 10.",
		summary:  []string{"no packet was made", "ENETUNREACH"},
	},
})

var _ = addScenario(scenario{
	name:  "route/rule-table",
	about: "an `ip rule` sends the pod's traffic to table 100, which has no route for the destination (only its `unreachable default` catch-all)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.AddTypedRoute("unreachable", "0.0.0.0/0", 100))
		must(t, s.Node.AddRuleFrom(s.PodIP.String()+"/32", 100, 100))
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp"}, pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "unreachable route default table 100",
		evidence: []evidence{{"ip rule", "100: from 10."}, {"route", "unreachable default table 100"}},
		fix:      "ip rule del pref 100",
		summary:  []string{"lookup 100"},
	},
})

var _ = addScenario(scenario{
	name:  "route/rule-prohibit",
	about: "an `ip rule ... prohibit` on the node (a policy rule with its own action, no table) for the pod's traffic to the destination",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.Run("ip", "rule", "add", "pref", "50", "from", s.PodIP.String(), "to", s.ExtIP.String(), "prohibit"))
		return pingArgs(s.PodIP.String(), s.ExtIP.String()), pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "ip rule 50: from 10.",
		evidence: []evidence{{"ip rule", "prohibit"}, {"kernel route lookup", "EACCES"}},
		fix:      "ip rule del pref 50",
		summary:  []string{"before any routing table is looked up"},
	},
})

var _ = addScenario(scenario{
	name:  "route/wrong-exit",
	about: "a more specific route in the node sends the destination out a second uplink where it is not (the node trace sees it leave)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		// A second uplink to a network where the destination is not: the node's trace (pod and
		// node only) sees the request leave by it.
		void, err := s.Lab.AddNS("void")
		must(t, err)
		must(t, s.Lab.Veth(s.Node, "veth-void", fmt.Sprintf("10.%d.3.1/24", netOf(s)), void, "eth0", fmt.Sprintf("10.%d.3.9/24", netOf(s))))
		must(t, s.Node.AddRouteVia(s.ExtIP.String()+"/32", fmt.Sprintf("10.%d.3.9", netOf(s)), "veth-void", 0))
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "icmp", "--netns-scope", s.Pod.Name() + "," + s.Node.Name()},
			pingFromPod(s, s.ExtIP.String(), 2)
	},
	want: want{
		outcome: "left-host", class: "left-host", netns: "node", ifname: "veth-void",
		cause:    "exit by veth-void",
		evidence: []evidence{{"route that chose veth-void", "dev veth-void"}, {"overridden route", "dev veth-ext"}},
		fix:      "ip route del 10.",
		summary:  []string{"is on the link of veth-ext"},
	},
})

var _ = addScenario(scenario{
	name:  "mtu/df-v4",
	about: "the node's uplink MTU is 1280 and the pod sends 1400-byte datagrams with DF set",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.SetMTU("veth-ext", 1280))
		must(t, s.Ext.SetMTU("eth0", 1280))
		return []string{"--src", s.PodIP.String(), "--dst", s.ExtIP.String(), "--proto", "udp"}, sendDF(s, s.ExtIP.String(), 1400, 2)
	},
	want: want{
		outcome: "dropped", class: "mtu", netns: "node",
		cause:    "packet of 1428 bytes too big for the MTU 1280 of veth-ext",
		evidence: []evidence{{"mtu of veth-ext", "1280"}, {"packet size", "1428"}},
		fix:      "ip link set dev veth-ext mtu",
		summary:  []string{"fragmentation needed", "back to 10.", "The node counted"},
	},
})

var _ = addScenario(scenario{
	name:  "mtu/too-big-v6",
	about: "the node's uplink MTU is 1280 and the pod sends 1400-byte IPv6 datagrams",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.SetMTU("veth-ext", 1280))
		must(t, s.Ext.SetMTU("eth0", 1280))
		return []string{"--src", s.Pod6, "--dst", s.Ext6, "--proto", "udp"}, sendDF(s, s.Ext6, 1400, 2)
	},
	want: want{
		v6: true, outcome: "dropped", class: "mtu", netns: "node",
		cause:    "packet of 1448 bytes too big for the MTU 1280 of veth-ext",
		evidence: []evidence{{"mtu of veth-ext", "1280"}, {"packet size", "1448"}},
		fix:      "ip link set dev veth-ext mtu",
		summary:  []string{"Packet Too Big", "back to fd00:", "The node counted", "(Icmp6OutPktTooBigs)"},
	},
})

var _ = addScenario(scenario{
	name:  "loop/node-ext-v4",
	about: "the node routes 10.<net>.9.0/24 to ext and ext routes it back to the node: a routing loop",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		dst := fmt.Sprintf("10.%d.9.0/24", netOf(s))
		must(t, s.Node.AddRouteVia(dst, s.ExtIP.String(), "", 0))
		must(t, s.Ext.AddRouteVia(dst, s.NodeExtIP.String(), "", 0))
		must(t, s.Ext.Sysctl("net.ipv4.ip_forward", "1"))
		to := fmt.Sprintf("10.%d.9.9", netOf(s))
		return []string{"--src", s.PodIP.String(), "--dst", to, "--proto", "icmp"}, pingFromPod(s, to, 2)
	},
	want: want{
		outcome: "dropped", class: "loop",
		cause:    "routing loop between",
		evidence: []evidence{{"places seen more than once", "veth-ext"}},
		fix:      "route del 10.",
		summary:  []string{"each to the other", "-node routes it `10.", "-ext routes it `10."},
	},
})

var _ = addScenario(scenario{
	name:  "loop/node-ext-v6",
	about: "the node routes fd00:<net>:9::/64 to ext and ext routes it back to the node (IPv6): the hop limit runs out",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		dst := fmt.Sprintf("fd00:%x:9::/64", netOf(s))
		must(t, s.Node.AddRouteVia(dst, s.Ext6, "", 0))
		nodeExt6 := netip.MustParseAddr(s.Ext6).As16()
		nodeExt6[15] = 1 // the node's address on the ext link (::1)
		must(t, s.Ext.AddRouteVia(dst, netip.AddrFrom16(nodeExt6).String(), "", 0))
		must(t, s.Ext.Sysctl("net.ipv6.conf.all.forwarding", "1"))
		to := fmt.Sprintf("fd00:%x:9::9", netOf(s))
		return []string{"--src", s.Pod6, "--dst", to, "--proto", "icmp"}, pingFromPod(s, to, 2)
	},
	want: want{
		v6: true, outcome: "dropped", class: "loop",
		cause:    "routing loop between",
		evidence: []evidence{{"places seen more than once", "veth-ext"}},
		fix:      "ip -6 route del fd00:",
		summary:  []string{"hop limit ran out", "each to the other", "-node routes it `fd00:", "-ext routes it `fd00:"},
	},
})

var _ = addScenario(scenario{
	name:  "route/missing-v4",
	about: "the node has no route for the destination (no default route either): a forwarded packet finds none",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		to := fmt.Sprintf("10.%d.9.9", netOf(s))
		return []string{"--src", s.PodIP.String(), "--dst", to, "--proto", "icmp"}, pingFromPod(s, to, 2)
	},
	want: want{
		outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "no route to 10.",
		evidence: []evidence{{"kernel route lookup", "ENETUNREACH"}},
		fix:      "ip route add 10.",
		summary:  []string{"not even a default route"},
	},
})

var _ = addScenario(scenario{
	name:  "route/rule-table-v6",
	about: "an `ip -6 rule` sends the pod's traffic to table 100, whose only route is `unreachable default` (IPv6)",
	setup: func(t *testing.T, s *scenarioLab) ([]string, func(*testing.T)) {
		must(t, s.Node.AddTypedRoute("unreachable", "::/0", 100))
		must(t, s.Node.AddRuleFrom(s.Pod6+"/128", 100, 100))
		return []string{"--src", s.Pod6, "--dst", s.Ext6, "--proto", "icmp"}, pingFromPod(s, s.Ext6, 2)
	},
	want: want{
		v6: true, outcome: "dropped", class: "route", netns: "node", ifname: "veth-pod",
		cause:    "unreachable route default table 100",
		evidence: []evidence{{"ip rule", "100: from fd00:"}, {"route", "unreachable default"}},
		fix:      "ip -6 rule del pref 100",
	},
})
