package nodestate

import (
	"net/netip"
	"strings"
	"testing"
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
