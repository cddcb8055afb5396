package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// loopClass: a packet whose TTL (hop limit) ran out where it was being forwarded. When the
// trace saw it come back to a place it had already been, it is a routing loop, and the routes
// of the namespaces it went round are named.
var _ = register(Class{
	Name:       "loop",
	Order:      13,
	Recognises: "`IP_INHDR` at `ip_forward` / `ip6_forward` (TTL or hop limit exhausted)",
	Reads:      "the places the packet was received at, from the trace (a place seen twice is a loop); live: each namespace's route for the destination",
	Fix:        "the route that sends the destination back where it came from (`ip route` in each namespace of the loop)",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "IP_INHDR" && (fn == "ip_forward" || fn == "ip6_forward")
	},
	Explain: (*Diagnoser).loop,
})

type loopPlace struct {
	netns     uint32
	name, dev string
	times     int
}

// loopPlaces are the places (namespace and device) where the example packet was received
// more than once, in the order it first came there, each with how often.
func loopPlaces(f *finding) []loopPlace {
	type key struct {
		netns uint32
		dev   string
	}
	seen := map[key]int{}
	var order []loopPlace
	for _, h := range f.example.Hops {
		if h.Event != trace.KindReceive || h.Copy {
			continue
		}
		k := key{h.Netns, h.Ifname}
		if seen[k] == 0 {
			order = append(order, loopPlace{netns: h.Netns, name: h.NetnsName, dev: h.Ifname})
		}
		seen[k]++
	}
	var again []loopPlace
	for _, p := range order {
		if n := seen[key{p.netns, p.dev}]; n > 1 {
			p.times = n
			again = append(again, p)
		}
	}
	return again
}

func (d *Diagnoser) loop(f *finding) {
	hd := f.headers()
	v6 := hd.Dst.Is6() && !hd.Dst.Is4In6()
	ttl := "TTL"
	if v6 {
		ttl = "hop limit"
	}
	again := loopPlaces(f)
	most := 0
	for _, p := range again {
		most = max(most, p.times)
	}
	ns := f.site.NetnsName
	if len(again) == 0 {
		f.cause = ttl + " exceeded"
		f.meaning = fmt.Sprintf("its %s ran out in %s: the sender set it too low, or it loops where this trace did not see it come back (trace every namespace of the path; traceroute %s shows the hops)", ttl, ns, hd.Dst)
		f.fix = []string{"traceroute " + hd.Dst.String() + "   # from the sender: a loop repeats the same hops", inNetns(ns, ipCmd(hd.Dst)+" route get "+hd.Dst.String())}
		return
	}
	// The namespaces of the loop, each with the route that sends the packet on.
	var names []string
	nsSeen := map[uint32]bool{}
	var loopNS []loopPlace
	for _, p := range again {
		names = append(names, p.name+" "+p.dev)
		if !nsSeen[p.netns] {
			nsSeen[p.netns] = true
			loopNS = append(loopNS, p)
		}
	}
	f.cause = "routing loop between " + joinNS(loopNS)
	f.evidence = append(f.evidence, trace.Evidence{What: "places seen more than once", Value: fmt.Sprintf("%s (up to %d times)", strings.Join(names, ", "), most), Source: "the packet's hops"})
	routes := map[uint32]string{}
	for _, h := range f.example.Hops {
		if h.Route != nil && nsSeen[h.Netns] && h.Route.Err == 0 {
			r := "-> " + h.Route.OutIfname
			if h.Route.Gateway.IsValid() {
				r += " via " + h.Route.Gateway.String()
			}
			routes[h.Netns] = r
		}
	}
	rf, live := d.facts.(routeFacts)
	live = live && d.facts != nil
	var loopRoutes []string
	f.fix = nil
	for _, p := range loopNS {
		text := routes[p.netns]
		if live {
			if dec, err := rf.RouteDecision(p.netns, RouteQuery{Src: hd.Src, Dst: hd.Dst, IifName: p.dev}); err == nil && dec.Route != "" {
				text = dec.Route
				f.fix = append(f.fix, inNetns(p.name, fmt.Sprintf("%s route del %s", ipCmd(hd.Dst), strings.TrimPrefix(routeSpec(dec), "unicast ")))+"   # if this is the wrong one of the loop's routes")
			}
		}
		if text != "" {
			f.evidence = append(f.evidence, trace.Evidence{What: "route for " + hd.Dst.String() + " in " + p.name, Value: text, Source: map[bool]string{true: "netlink in netns " + p.name, false: "fib:fib_table_lookup"}[live]})
			loopRoutes = append(loopRoutes, fmt.Sprintf("%s routes it `%s`", p.name, text))
		}
	}
	f.meaning = fmt.Sprintf("it went round between %s (%s) until its %s ran out in %s, which then sends ICMP time exceeded back to %s",
		joinNS(loopNS), strings.Join(names, ", "), ttl, ns, hd.Src)
	if len(loopRoutes) > 0 {
		f.meaning += ": " + strings.Join(loopRoutes, " and ") + ", each to the other"
	}
	f.fix = append(f.fix, "one of these routes is wrong: the destination "+hd.Dst.String()+" must be routed towards where it lives")
	f.sure = true
}

func joinNS(ps []loopPlace) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.name)
	}
	return strings.Join(s, " and ")
}

// routeSpec is what `ip route del` needs to name a route: its prefix, gateway and table.
func routeSpec(dec RouteDecision) string {
	s := dec.Prefix
	if dec.Gw.IsValid() {
		s += " via " + dec.Gw.String()
	}
	if dec.Table != 0 && dec.Table != 254 {
		s += " table " + tableName(dec.Table)
	}
	return s
}
