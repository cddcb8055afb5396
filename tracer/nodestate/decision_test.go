package nodestate

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestRouteDecision(t *testing.T) {
	topo := standard(t, "ptns-decide", 228)
	r := New("/proc")
	node := topo.Node.Inode()
	fwd := RouteQuery{Src: topo.PodIP, Dst: topo.ExtIP, IifName: "veth-pod"}
	decide := func(ino uint32, q RouteQuery) RouteDecision {
		t.Helper()
		d, err := r.RouteDecision(ino, q)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// A plain forwarded packet: the connected route, the device and its MTU.
	must(t, topo.Node.SetMTU("veth-ext", 1280))
	d := decide(node, fwd)
	if !strings.HasPrefix(d.Route, "10.228.2.0/24 dev veth-ext") || d.Type != "unicast" || d.Dev != "veth-ext" || d.LinkMTU != 1280 || !d.Exact || d.Errno != "" {
		t.Errorf("connected route: %+v", d)
	}

	// An unreachable host route in main: named though the kernel answers only EHOSTUNREACH.
	must(t, topo.Node.AddTypedRoute("unreachable", "10.228.2.2/32", 0))
	d = decide(node, fwd)
	if d.Route != "unreachable 10.228.2.2" || d.Type != "unreachable" || d.Prefix != "10.228.2.2" || d.Table != 254 || d.Errno != "EHOSTUNREACH" || !d.Exact {
		t.Errorf("unreachable route: %+v", d)
	}

	// A rule sending the pod's packets to table 100, whose only route is unreachable default.
	must(t, topo.Node.AddTypedRoute("unreachable", "0.0.0.0/0", 100))
	must(t, topo.Node.AddRuleFrom(topo.PodIP.String()+"/32", 100, 100))
	d = decide(node, fwd)
	if d.Route != "unreachable default table 100" || d.Table != 100 || d.Rule != "100: from 10.228.1.2 lookup 100" || d.RulePref != 100 || !d.Exact {
		t.Errorf("rule to table 100: %+v", d)
	}
	// Another source does not match the rule: main's unreachable /32 again.
	d = decide(node, RouteQuery{Src: topo.ExtIP, Dst: topo.ExtIP, IifName: "veth-pod"})
	if d.Table != 254 || d.Route != "unreachable 10.228.2.2" {
		t.Errorf("rule for another source: %+v", d)
	}

	// Rules of their own action: prohibit before the lookup rule (a nop rule, which does
	// nothing, in front of it), then unreachable for another destination.
	must(t, topo.Node.Run("ip", "rule", "add", "pref", "40", "to", "10.228.2.0/24", "nop"))
	must(t, topo.Node.Run("ip", "rule", "add", "pref", "50", "from", topo.PodIP.String(), "to", "10.228.2.2", "prohibit"))
	must(t, topo.Node.Run("ip", "rule", "add", "pref", "60", "to", "10.228.2.4", "unreachable"))
	d = decide(node, fwd)
	if d.RuleAction != "prohibit" || d.Type != "prohibit" || d.Rule != "50: from 10.228.1.2 to 10.228.2.2 prohibit" || d.RulePref != 50 || d.Route != "" || !d.Exact {
		t.Errorf("prohibit rule: %+v", d)
	}
	d = decide(node, RouteQuery{Src: topo.PodIP, Dst: netip.MustParseAddr("10.228.2.4"), IifName: "veth-pod"})
	if d.RuleAction != "unreachable" || d.Rule != "60: from all to 10.228.2.4 unreachable" || d.Errno != "ENETUNREACH" || !d.Exact {
		t.Errorf("unreachable rule: %+v", d)
	}
	out, err := exec.Command("ip", "netns", "exec", topo.Node.Name(), "ip", "rule").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"50:\tfrom 10.228.1.2 to 10.228.2.2 prohibit", "60:\tfrom all to 10.228.2.4 unreachable"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("ip rule prints %q, not %q: the rule text must read as ip rule's", out, line)
		}
	}
	for _, pref := range []string{"40", "50", "60"} {
		must(t, topo.Node.Run("ip", "rule", "del", "pref", pref))
	}

	// A more specific route out another device: the connected route it overrides is listed.
	must(t, topo.Node.AddRouteVia("10.228.2.3/32", topo.PodIP.String(), "veth-pod", 0))
	d = decide(node, RouteQuery{Dst: netip.MustParseAddr("10.228.2.3")})
	if d.Dev != "veth-pod" || len(d.Covering) != 1 || !strings.HasPrefix(d.Covering[0], "10.228.2.0/24 dev veth-ext") || d.CoveringDevs[0] != "veth-ext" {
		t.Errorf("override: %+v", d)
	}

	// No route at all (the pod has no IPv6).
	d = decide(topo.Pod.Inode(), RouteQuery{Dst: netip.MustParseAddr("2001:db8::1")})
	if d.Route != "" || d.Errno != "ENETUNREACH" || !d.Exact {
		t.Errorf("no route: %+v", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRuleWalkPieces(t *testing.T) {
	ipnet := func(s string) *net.IPNet { _, n, _ := net.ParseCIDR(s); return n }
	mask := uint32(0xff00)
	cases := []struct {
		rule  netlink.Rule
		text  string
		match bool
	}{
		{netlink.Rule{Priority: 100, Src: ipnet("10.0.1.2/32"), Table: 100, Goto: -1, SuppressPrefixlen: -1}, "100: from 10.0.1.2 lookup 100", true},
		{netlink.Rule{Priority: 200, Src: ipnet("10.0.9.0/24"), Table: 100, Goto: -1, SuppressPrefixlen: -1}, "200: from 10.0.9.0/24 lookup 100", false},
		{netlink.Rule{Priority: 300, Src: ipnet("10.0.9.0/24"), Invert: true, Table: 254, Goto: -1, SuppressPrefixlen: -1}, "300: not from 10.0.9.0/24 lookup main", true},
		{netlink.Rule{Priority: 400, IifName: "veth-pod", Table: 7, Goto: -1, SuppressPrefixlen: -1}, "400: from all iif veth-pod lookup 7", true},
		{netlink.Rule{Priority: 500, IifName: "eth9", Table: 7, Goto: -1, SuppressPrefixlen: -1}, "500: from all iif eth9 lookup 7", false},
		{netlink.Rule{Priority: 600, Mark: 0x100, Mask: &mask, Table: 7, Goto: -1, SuppressPrefixlen: -1}, "600: from all fwmark 0x100/0xff00 lookup 7", false},
		{netlink.Rule{Priority: 700, Table: 254, Goto: -1, SuppressPrefixlen: 0}, "700: from all lookup main suppress_prefixlength 0", true},
	}
	q := RouteQuery{Src: netip.MustParseAddr("10.0.1.2"), Dst: netip.MustParseAddr("10.0.2.2")}
	for _, c := range cases {
		if got := ruleText(&c.rule); got != c.text {
			t.Errorf("ruleText = %q, want %q", got, c.text)
		}
		if got := ruleMatches(&c.rule, q, "veth-pod"); got != c.match {
			t.Errorf("%s matches %v, want %v", c.text, got, c.match)
		}
	}

	routes := []netlink.Route{
		{Dst: nil, Gw: net.ParseIP("10.0.3.1"), Type: unix.RTN_UNICAST},
		{Dst: ipnet("10.0.2.0/24"), Type: unix.RTN_UNICAST, Priority: 0},
		{Dst: ipnet("10.0.2.2/32"), Type: unix.RTN_UNREACHABLE, Priority: 10},
		{Dst: ipnet("10.0.2.2/32"), Type: unix.RTN_BLACKHOLE, Priority: 5},
		{Dst: ipnet("fd00::/64"), Type: unix.RTN_UNICAST},
	}
	best, covering := longestMatch(routes, q.Dst)
	if best == nil || best.Type != unix.RTN_BLACKHOLE {
		t.Errorf("longest match %+v, want the /32 of lowest metric (blackhole)", best)
	}
	if len(covering) != 2 {
		t.Errorf("covering %+v, want the /24 and the default", covering)
	}
	if best, _ := longestMatch(routes, netip.MustParseAddr("192.0.2.1")); best == nil || best.Dst != nil {
		t.Errorf("192.0.2.1: %+v, want the default route", best)
	}
}
