package diagnose

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// RouteQuery is a routing decision to read on the node: an input lookup (a forwarded packet:
// Iif or IifName set) or an output lookup (a packet the namespace sent).
type RouteQuery struct {
	Src, Dst netip.Addr
	Iif      int
	IifName  string
}

// RouteDecision is what the namespace's tables give a query, as `ip route` and `ip rule`
// print them (see nodestate.RouteDecision).
type RouteDecision struct {
	Route, Type, Prefix string
	Table               int
	Dev                 string
	Gw                  netip.Addr
	Rule                string // "" when the default rules chose the table
	RulePref            int
	RuleAction          string // "unreachable", "prohibit", "blackhole": Rule decided without a table
	Errno               string // the kernel's lookup's error, "" when it found a route
	Exact               bool   // the kernel's lookup agrees with the route named
	LinkMTU, RouteMTU   int
	PathMTU             int
	MTULock             bool
	// Covering: the table's other routes that match the destination, less specific (the
	// connected route a more specific one overrides); CoveringDevs their devices.
	Covering, CoveringDevs []string
}

// routeFacts reads the node's routing decision; a live run's Facts has it.
type routeFacts interface {
	RouteDecision(netns uint32, q RouteQuery) (RouteDecision, error)
}

// routeClass: the route for the destination is an unreachable, blackhole or prohibit route,
// or there is none. IPv4 forwarded packets die in ip_error, which the forwarding class sees
// first; with forwarding on it hands over here (routeDecision).
var routeClass = register(Class{
	Name:       "route",
	Order:      11,
	Recognises: "`IP_OUTNOROUTES`; drops in `ip6_pkt_discard`/`ip6_pkt_prohibit` (and `_out`), `dst_discard`; `ip_error` with forwarding on (through `forwarding`)",
	Reads:      "the route lookups from the trace; live: the route (`ip route`, with its type and table) and the `ip rule` that chose the table (or decided itself: `unreachable`/`prohibit`/`blackhole` rules), by an input lookup from the packet's source and device",
	Fix:        "`ip route del <type> <prefix> table <T>`, `ip rule del pref <N>`, or the missing route, in that namespace",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "IP_OUTNOROUTES" || strings.HasPrefix(fn, "ip6_pkt_") || strings.HasPrefix(fn, "dst_discard")
	},
	Explain: (*Diagnoser).noRoute,
})

func (d *Diagnoser) noRoute(f *finding) {
	fn := funcOf(f.site.Location)
	// A packet sent by the namespace itself dies on output; a received one on input.
	local := f.site.Reason == "IP_OUTNOROUTES" || strings.HasSuffix(fn, "_out") || f.receivedIn() == ""
	d.routeDecision(f, !local)
}

// receivedIn is the device the example packet last came in on in the drop's namespace.
func (f *finding) receivedIn() string {
	dev := ""
	for _, h := range f.example.Hops {
		if h.Event == trace.KindReceive && h.Netns == f.site.Netns && !h.Copy {
			dev = h.Ifname
		}
		if h.Event == trace.KindDrop && !h.Copy {
			break
		}
	}
	return dev
}

// lookupErrno names the errors fib_table_lookup reports, and what route gives each.
var lookupErrno = map[int32]struct{ name, route string }{
	-101: {"ENETUNREACH", "no route"},
	-113: {"EHOSTUNREACH", "an unreachable route"},
	-22:  {"EINVAL", "a blackhole route"},
	-13:  {"EACCES", "a prohibit route"},
	-11:  {"EAGAIN", "no route in this table: the lookup goes on to the next rule"},
}

func lookupErrText(e int32) string {
	if n, ok := lookupErrno[e]; ok {
		return fmt.Sprintf("error %d %s (%s)", e, n.name, n.route)
	}
	return fmt.Sprintf("error %d", e)
}

// traceRouteError is the last failed lookup the trace saw in the drop's namespace (not
// EAGAIN, which only moves on to the next rule).
func (f *finding) traceRouteError() *trace.Route {
	var r *trace.Route
	for _, h := range f.example.Hops {
		if h.Route != nil && h.Netns == f.site.Netns && h.Route.Err != 0 && h.Route.Err != -11 {
			r = h.Route
		}
	}
	return r
}

// ipCmd is `ip` for the address family of a.
func ipCmd(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "ip -6"
	}
	return "ip"
}

// routeDecision names the route the kernel chose for the dropped packet (forwarded: an input
// lookup from its source on the device it came in on), the rule that chose its table and the
// command that removes it. Without the node's state it says what the trace's lookups show.
func (d *Diagnoser) routeDecision(f *finding, forwarded bool) {
	hd := f.headers()
	ns := f.site.NetnsName
	ip := ipCmd(hd.Dst)
	q := RouteQuery{Src: hd.Src, Dst: hd.Dst}
	get := ip + " route get " + hd.Dst.String()
	if forwarded {
		q.IifName = orDefault(f.receivedIn(), f.site.Ifname)
		get += " from " + hd.Src.String() + " iif " + q.IifName
	}
	if !f.hasEvidenceFrom("fib:fib_table_lookup") {
		f.evidence = append(f.evidence, f.routeEvidence()...)
	}
	cause := "no usable route to " + hd.Dst.String()
	if r := f.traceRouteError(); r != nil {
		if n, ok := lookupErrno[r.Err]; ok {
			cause = n.route + " for " + hd.Dst.String()
			if r.Err == -101 {
				cause = "no route to " + hd.Dst.String()
			}
		}
	}
	f.cause = cause
	f.meaning = fmt.Sprintf("the route lookup for %s in %s found %s", hd.Dst, ns, strings.TrimSuffix(cause, " for "+hd.Dst.String()))
	f.fix = []string{inNetns(ns, get), inNetns(ns, ip+" rule")}
	rf, ok := d.facts.(routeFacts)
	if d.facts == nil || !ok {
		f.meaning += " (the route itself is not named: this trace was not read live on the node; " + inNetns(ns, get) + " and " + ip + " rule there name it)"
		return
	}
	dec, err := rf.RouteDecision(f.site.Netns, q)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "route decision", Value: err.Error(), Source: "read failed"})
		f.meaning += " (the node's routes could not be read: " + inNetns(ns, get) + " names it)"
		return
	}
	src := "netlink (ip route, ip rule) in netns " + ns
	lookup := "-> " + dec.Route
	if dec.Errno != "" {
		lookup = dec.Errno
	}
	f.evidence = append(f.evidence, trace.Evidence{What: "kernel route lookup", Value: get + ": " + lookup, Source: "RTM_GETROUTE in netns " + ns})
	if dec.Route != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "route", Value: dec.Route, Source: src})
	}
	if dec.Rule != "" && dec.Table != 254 {
		f.evidence = append(f.evidence, trace.Evidence{What: "ip rule", Value: dec.Rule, Source: src})
	}
	table := ""
	if dec.Table != 0 && dec.Table != 254 {
		table = fmt.Sprintf(" table %s", tableName(dec.Table))
	}
	chosen := ""
	if dec.Rule != "" && dec.Table != 254 {
		chosen = fmt.Sprintf(", in the table `ip rule` `%s` chose for it", dec.Rule)
	}
	// What the kernel does with a packet an unreachable/blackhole/prohibit route or rule
	// matches; an unreachable rule answers network unreachable (ENETUNREACH), a route host.
	what := func(typ, unreachable string) string {
		switch typ {
		case "unreachable":
			return "the kernel drops what it matches and answers ICMP " + unreachable + " unreachable"
		case "blackhole":
			return "the kernel drops what it matches silently"
		}
		return "the kernel drops what it matches and answers ICMP administratively prohibited"
	}
	switch {
	case dec.RuleAction != "":
		// A policy rule of type unreachable/prohibit/blackhole: no table is looked up.
		f.cause = fmt.Sprintf("ip rule %s", dec.Rule)
		f.meaning = fmt.Sprintf("the policy rule `%s` in %s matches %s before any routing table is looked up, and its action is %s: %s", dec.Rule, ns, hd.Dst, dec.RuleAction, what(dec.RuleAction, "network"))
		f.fix = []string{inNetns(ns, fmt.Sprintf("%s rule del pref %d", ip, dec.RulePref)) + "   # if it is not meant to be there", inNetns(ns, ip+" rule") + "   # to check"}
		f.sure = dec.Exact
	case dec.Type == "unreachable", dec.Type == "blackhole", dec.Type == "prohibit":
		f.cause = fmt.Sprintf("%s route %s%s", dec.Type, dec.Prefix, table)
		f.meaning = fmt.Sprintf("%s matches the route `%s` in %s%s: %s", hd.Dst, dec.Route, ns, chosen, what(dec.Type, "host"))
		f.fix = []string{inNetns(ns, fmt.Sprintf("%s route del %s %s%s", ip, dec.Type, dec.Prefix, table)) + "   # if it is not meant to be there"}
		if dec.Rule != "" && dec.Table != 254 {
			f.fix = append(f.fix, fmt.Sprintf("or add the route %s needs to table %s (%s route add %s via <gateway> table %s), or remove the rule: %s",
				hd.Dst, tableName(dec.Table), ip, hd.Dst, tableName(dec.Table), inNetns(ns, fmt.Sprintf("%s rule del pref %d", ip, dec.RulePref))))
		}
		f.fix = append(f.fix, inNetns(ns, get)+"   # to check")
		f.sure = dec.Exact
	case dec.Type == "", dec.Type == "throw":
		if dec.Errno == "ENETUNREACH" || dec.Route == "" {
			f.cause = "no route to " + hd.Dst.String()
			f.meaning = fmt.Sprintf("no table the policy rules lead to in %s has a route for %s, not even a default route (the kernel's lookup says ENETUNREACH)", ns, hd.Dst)
			f.fix = []string{inNetns(ns, fmt.Sprintf("%s route add %s via <gateway>", ip, hd.Dst)) + "   # or a default route", inNetns(ns, ip+" route show table all")}
			f.sure = dec.Exact
		}
	default:
		// The tables give a usable route now: it changed since, or the lookup that failed
		// was not this one.
		f.meaning += fmt.Sprintf("; the node's tables now give %s the route `%s`%s: it may have been changed since the drop", hd.Dst, dec.Route, chosen)
	}
	if !dec.Exact && dec.Route != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "route found by walking ip rule and the tables", Value: "does not agree with the kernel's lookup (" + lookup + "): rules with selectors this reading does not follow (ports, uid, tos) may decide", Source: src})
	}
}

func tableName(t int) string {
	switch t {
	case 254:
		return "main"
	case 255:
		return "local"
	case 253:
		return "default"
	}
	return fmt.Sprint(t)
}

func (f *finding) hasEvidenceFrom(source string) bool {
	for _, e := range f.evidence {
		if e.Source == source {
			return true
		}
	}
	return false
}

// nameExitRoute names, in a left-host verdict, the route that chose the device the request
// left by, read live in that namespace; when that route overrides a connected route of
// another device (the destination is on that device's link), the exit is likely wrong and
// the verdict says so first.
func (d *Diagnoser) nameExitRoute(v *trace.Verdict, c *tally) {
	eg := egressAt(c.left)
	if eg < 0 || c.left.Hops[eg].Tuple == nil {
		return
	}
	e := c.left.Hops[eg]
	rf, ok := d.facts.(routeFacts)
	if d.facts == nil || !ok {
		return
	}
	q := RouteQuery{Src: e.Tuple.Src, Dst: e.Tuple.Dst}
	get := ipCmd(q.Dst) + " route get " + q.Dst.String()
	if c.leftInAt >= 0 && c.leftInAt < len(c.left.Hops) {
		q.IifName = c.left.Hops[c.leftInAt].Ifname
		get += " from " + q.Src.String() + " iif " + q.IifName
	}
	dec, err := rf.RouteDecision(e.Netns, q)
	if err != nil || dec.Route == "" {
		return
	}
	src := "netlink (ip route, ip rule) in netns " + e.NetnsName
	v.Evidence = append(v.Evidence, trace.Evidence{What: "route that chose " + e.Ifname, Value: dec.Route, Source: src})
	if dec.Rule != "" && dec.Table != 254 {
		v.Evidence = append(v.Evidence, trace.Evidence{What: "ip rule", Value: dec.Rule, Source: src})
	}
	for i, cov := range dec.Covering {
		dev := dec.CoveringDevs[i]
		if dev == "" || dev == dec.Dev || strings.Contains(cov, " via ") {
			continue
		}
		// The destination is on the link of dev, yet a more specific route sends it elsewhere.
		v.Evidence = append(v.Evidence, trace.Evidence{What: "overridden route", Value: cov, Source: src})
		v.Cause = "exit by " + dec.Dev + " (route " + dec.Prefix + ")"
		v.Summary = fmt.Sprintf("not dropped on this host, but the request left %s by %s (source %s) and no reply came back while tracing: the route `%s` overrides the connected route `%s`, and %s is on the link of %s, not of %s",
			e.NetnsName, dec.Dev, e.Tuple.Src, dec.Route, cov, q.Dst, dev, dec.Dev)
		v.Fix = []string{
			inNetns(e.NetnsName, fmt.Sprintf("%s route del %s", ipCmd(q.Dst), routeSpec(dec))) + "   # if " + q.Dst.String() + " is not meant to go out " + dec.Dev,
			inNetns(e.NetnsName, get) + "   # to check",
		}
		return
	}
	v.Summary += fmt.Sprintf(" (it left by %s on the route `%s` in %s)", dec.Dev, dec.Route, e.NetnsName)
}

// RouteLookup records a route lookup of the flow that failed; a live run passes every route
// event, a lookup with no packet included. EAGAIN counts: a lookup that no table answers
// reports EAGAIN for the last table it tried, and the kernel turns it into ENETUNREACH.
func (d *Diagnoser) RouteLookup(h trace.Hop) {
	if h.Route == nil || h.Route.Err == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.routeErrs) >= 16 {
		d.routeErrs = append(d.routeErrs[:0], d.routeErrs[8:]...)
	}
	d.routeErrs = append(d.routeErrs, h)
}

// notSentClass: no packet was made because the sender's own route lookup failed (a pod with
// no route: its socket gets ENETUNREACH); the trace sees only the lookup.
var _ = register(Class{
	Name:       "not-sent",
	Order:      700,
	Recognises: "no packet, and a failed output route lookup (`fib:fib_table_lookup` with an error) for the flow",
	Reads:      "the failed lookup from the trace; live: the sender's routes and rules",
	Fix:        "the missing route (a default route) in the sender's namespace",
	Conclude: func(d *Diagnoser, _ *trace.Trace, c *tally) (trace.Verdict, bool) {
		d.mu.Lock()
		// The last lookup that failed with an error of its own, else the last that no table
		// answered.
		var h trace.Hop
		for _, e := range d.routeErrs {
			if h.Route == nil || e.Route.Err != -11 || h.Route.Err == -11 {
				h = e
			}
		}
		d.mu.Unlock()
		if c.packets > 0 || h.Route == nil {
			return trace.Verdict{}, false
		}
		return d.notSent(h), true
	},
})

func (d *Diagnoser) notSent(h trace.Hop) trace.Verdict {
	l := h.Route.Lookup
	f := &finding{
		site:    trace.DropSite{Flow: trace.Request, Place: h.Place},
		example: trace.Packet{Flow: trace.Request, Tuple: trace.Headers{Tuple: l}, Hops: []trace.Hop{h}},
	}
	d.routeDecision(f, false)
	ns := orDefault(h.NetnsName, "this host")
	errText := lookupErrText(h.Route.Err)
	switch n, ok := lookupErrno[h.Route.Err]; {
	case h.Route.Err == -11:
		errText = fmt.Sprintf("no table had a route: the last, %s, answered EAGAIN, which the kernel returns as ENETUNREACH", orDefault(h.Route.TableName, fmt.Sprint(h.Route.Table)))
	case ok:
		errText = n.name
	}
	v := trace.Verdict{
		Outcome: "not-sent",
		Cause:   f.cause + " in " + ns,
		Summary: fmt.Sprintf("no packet was made: the route lookup for %s in %s failed (%s), so the sender's socket got the error instead of sending; %s",
			l.Dst, ns, errText, f.meaning),
		Evidence: f.evidence,
		Fix:      f.fix,
	}
	switch {
	case f.sure:
		v.Confidence = "high"
	default:
		v.Confidence = "medium"
	}
	return v
}
