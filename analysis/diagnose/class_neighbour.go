package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// Neighbour resolution: a packet waits in its next hop's neighbour entry until ARP/NDP answers,
// and is dropped (NEIGH_FAILED) when the entry fails. The next hop is the route's gateway, or
// the destination when it is on-link: never the destination by default. When what should answer
// is on this node (the veth's peer, by its own address or by proxy ARP), the cause is that
// device's state, read in its namespace.

var _ = register(Class{
	Name:       "neighbour",
	Order:      60,
	Recognises: "`NEIGH_*` (the next hop's ARP/NDP failed, or its queue overflowed)",
	Reads:      "the route decision (gateway or on-link destination), the neighbour entry, and what should answer on the link: the veth peer's link state, whether it refuses the requests' sender (`rp_filter` and its route back, `accept_local`), `arp_ignore`/`arp_filter`, `proxy_arp` and forwarding, in the peer's namespace",
	Fix:        "the object that does not answer, with the command in its namespace (`sysctl -w net.ipv4.ip_forward=1` where proxy ARP needs forwarding, `ip link set <peer> up`, `arp_ignore`, loose `rp_filter`...), or the route's gateway",
	Drop: func(s *trace.DropSite, fn string) bool {
		return strings.HasPrefix(s.Reason, "NEIGH_") || neighQueue(s.Location)
	},
	Explain: (*Diagnoser).neighbour,
})

var _ = register(Class{
	Name:       "neighbour-waiting",
	Order:      800,
	Recognises: "requests last seen queued for their next hop's address (only the ARP/NDP probe's copy freed), the run stopped before the entry failed",
	Reads:      "as `neighbour`, and the entry's state now (`INCOMPLETE`/`FAILED`)",
	Fix:        "as `neighbour`; `ip neigh show` settles whether the entry failed",
	Conclude:   (*Diagnoser).neighbourWaiting,
})

// NextHop is a route decision read live: the route as `ip route` prints it, and the address
// the namespace resolves for it (the gateway, or the destination when on-link).
type NextHop struct {
	Route   string
	Gateway netip.Addr // invalid when on-link
	Addr    netip.Addr
	Dev     string
	Onlink  bool
	Src     netip.Addr // the source the kernel picks for it; invalid when not known
}

// LinkState is a device's state and, for a veth, its peer's.
type LinkState struct {
	Kind                      string
	Up, LowerUp               bool
	Oper                      string
	PeerNetns                 uint32 // 0: no peer, or not found
	PeerNetnsName, PeerIfname string
	PeerUp, PeerLowerUp       bool
}

// AddrOwner is a device of the node that has an address configured.
type AddrOwner struct {
	Netns     uint32
	NetnsName string
	Dev       string
}

// neighFacts is the node state the neighbour classes read beyond Facts.
type neighFacts interface {
	NextHop(netns uint32, src, dst netip.Addr) (NextHop, error)
	Link(netns uint32, dev string) (LinkState, error)
	AddrOwners(addr netip.Addr) []AddrOwner
}

// resolution is what is known of one failed or pending address resolution.
type resolution struct {
	netns     uint32
	netnsName string
	dev       string // the device the packet waits on
	src, dst  netip.Addr
	route     *trace.Route // the trace's route lookup in that namespace, if seen

	next     netip.Addr // the address resolved
	viaGW    bool       // next is the route's gateway (it may equal the destination)
	routeTxt string     // the route that decided, as `ip route` prints it
	cause    string
	detail   string // the cause in a sentence, for the summary
	evidence []trace.Evidence
	fix      []string
	sure     bool
	state    string // the neighbour entry's state now, "" if not read
}

func (r *resolution) proto() string {
	if r.dst.Is6() {
		return "NDP"
	}
	return "ARP"
}

// neighbour explains a drop by the neighbour code: its entry failed (NEIGH_FAILED), its queue
// overflowed while waiting (NEIGH_QUEUEFULL), it was removed (NEIGH_DEAD).
func (d *Diagnoser) neighbour(f *finding) {
	h := f.headers()
	r := &resolution{netns: f.site.Netns, netnsName: f.site.NetnsName, dev: f.site.Ifname, src: h.Src, dst: h.Dst, route: routeIn(f.example.Hops, f.site.Netns)}
	d.resolve(r)
	f.evidence = append(f.evidence, r.evidence...)
	f.fix = r.fix
	f.sure = r.sure
	switch {
	case neighQueue(f.site.Location) && !strings.HasPrefix(f.site.Reason, "NEIGH_") && funcOf(f.site.Location) != "neigh_invalidate":
		f.cause = "next hop " + r.nextText() + " not resolved: its neighbour entry was destroyed with the packets queued"
	case f.site.Reason == "NEIGH_QUEUEFULL":
		f.cause = "next hop " + r.nextText() + " not resolved: too many packets queued waiting for it"
	default:
		f.cause = "next hop " + r.nextText() + " not resolved"
	}
	if r.cause != "" {
		f.cause += ": " + r.cause
	}
	f.meaning = fmt.Sprintf("no %s answer for the next hop %s on %s", r.proto(), r.nextText(), r.dev)
	if r.routeTxt != "" {
		f.meaning += " (route: " + r.routeTxt + ")"
	}
	if r.detail != "" {
		f.meaning += "; " + r.detail
	}
}

// nextText names the next hop, or says how it is chosen when it is not known.
func (r *resolution) nextText() string {
	if r.next.IsValid() {
		return r.next.String()
	}
	return "(the gateway of the route to " + r.dst.String() + ")"
}

// routeIn is the packet's last route lookup in netns.
func routeIn(hops []trace.Hop, netns uint32) *trace.Route {
	var rt *trace.Route
	for i := range hops {
		if h := &hops[i]; h.Route != nil && h.Netns == netns && h.Route.Err == 0 {
			c := *h.Route
			rt = &c
		}
	}
	return rt
}

// resolve finds the next hop (the route decision), the neighbour entry's state, and what should
// have answered.
func (d *Diagnoser) resolve(r *resolution) {
	nf, _ := d.facts.(neighFacts)
	// The route decision: the trace's lookup in that namespace where it was seen (a forwarded
	// packet); a locally generated packet's lookup happens before its sk_buff exists, so the
	// route is read live.
	if rt := r.route; rt != nil {
		if rt.Gateway.IsValid() {
			r.next, r.viaGW = rt.Gateway, true
		} else {
			r.next = r.dst
		}
		if r.dev == "" {
			r.dev = rt.OutIfname
		}
		v := "table " + orDefault(rt.TableName, fmt.Sprint(rt.Table)) + ": -> " + rt.OutIfname
		if rt.Gateway.IsValid() {
			v += " via " + rt.Gateway.String()
		}
		r.evidence = append(r.evidence, trace.Evidence{What: "route lookup " + rt.Lookup.Src.String() + " > " + rt.Lookup.Dst.String(), Value: v, Source: "fib:fib_table_lookup"})
	}
	if nf != nil && r.dst.IsValid() {
		nh, err := nf.NextHop(r.netns, r.src, r.dst)
		if err != nil && r.src.IsValid() {
			// A forwarded packet's source is no address of this namespace: an output lookup
			// from it is refused. The route without it is the one a person compares.
			nh, err = nf.NextHop(r.netns, netip.Addr{}, r.dst)
		}
		if err == nil {
			if !r.next.IsValid() {
				r.next, r.viaGW = nh.Addr, nh.Gateway.IsValid()
			}
			if r.dev == "" {
				r.dev = nh.Dev
			}
			r.routeTxt = nh.Route
			r.evidence = append(r.evidence, trace.Evidence{What: "route decision", Value: nh.Route, Source: "ip route get " + r.dst.String() + ", netlink in netns " + r.netnsName})
		}
	}
	if r.next.IsValid() {
		what := "gateway"
		if !r.viaGW {
			what = "destination (on-link)"
		}
		r.evidence = append(r.evidence, trace.Evidence{What: "next hop", Value: r.next.String() + ", the " + what + ", on " + r.dev, Source: "route decision"})
	}
	dst := r.dst.String()
	if !r.next.IsValid() {
		// A replay without the route: say how to find it.
		r.fix = []string{
			inNetns(r.netnsName, "ip route get "+dst) + "   # the next hop: the gateway, or " + dst + " when on-link",
			inNetns(r.netnsName, "ip neigh show dev "+r.dev),
		}
		return
	}
	next := r.next.String()
	r.fix = []string{inNetns(r.netnsName, "ip neigh show "+next+" dev "+r.dev) + "   # FAILED or INCOMPLETE: nothing answered " + r.proto() + " for " + next}
	if d.facts == nil {
		r.fix = append(r.fix, "check that "+next+" is up and answers "+r.proto()+" on the link of "+r.dev)
		return
	}
	if st, err := d.facts.Neighbour(r.netns, r.dev, r.next); err == nil {
		r.state = st
		r.evidence = append(r.evidence, trace.Evidence{What: "neighbour entry", Value: next + " on " + r.dev + ": " + st, Source: "ip neigh, netlink in netns " + r.netnsName})
	}
	if nf == nil {
		r.fix = append(r.fix, "check that "+next+" is up and answers "+r.proto()+" on the link of "+r.dev)
		r.sure = r.state == "FAILED" || r.state == "INCOMPLETE"
		return
	}
	d.answerer(nf, r)
}

// answerer follows the cause one step: who should answer ARP/NDP for the next hop on the
// device's link, and why it does not.
func (d *Diagnoser) answerer(nf neighFacts, r *resolution) {
	next := r.next.String()
	link, err := nf.Link(r.netns, r.dev)
	if err != nil {
		r.fix = append(r.fix, "check that "+next+" is up and answers "+r.proto()+" on the link of "+r.dev)
		return
	}
	r.evidence = append(r.evidence, trace.Evidence{What: "link " + r.dev, Value: linkText(link.Up, link.LowerUp, link.Kind), Source: "netlink in netns " + r.netnsName})
	peer := link.PeerNetns != 0 && link.PeerIfname != ""
	if peer {
		r.evidence = append(r.evidence, trace.Evidence{What: "peer of " + r.dev, Value: link.PeerIfname + " in " + link.PeerNetnsName + ": " + linkText(link.PeerUp, link.PeerLowerUp, "veth"), Source: "netlink in netns " + link.PeerNetnsName})
	}
	switch {
	case !link.Up:
		r.cause = r.dev + " is down"
		r.detail = r.dev + " is administratively down"
		r.fix = append(r.fix, inNetns(r.netnsName, "ip link set "+r.dev+" up"))
		r.sure = true
		return
	case peer && !link.PeerUp:
		r.cause = "the peer of " + r.dev + ", " + link.PeerIfname + " in " + link.PeerNetnsName + ", is down"
		r.detail = fmt.Sprintf("%s has no carrier: its veth peer %s in %s is down, so nothing on the link can answer for %s", r.dev, link.PeerIfname, link.PeerNetnsName, next)
		r.fix = append(r.fix, inNetns(link.PeerNetnsName, "ip link set "+link.PeerIfname+" up"))
		r.sure = true
		return
	case !link.LowerUp:
		r.cause = r.dev + " has no carrier"
		r.detail = r.dev + " has no carrier (its cable, or the other end, is down)"
		r.fix = append(r.fix, inNetns(r.netnsName, "ip link show "+r.dev)+"   # NO-CARRIER: the other end of the link")
		r.sure = true
		return
	}
	owners := nf.AddrOwners(r.next)
	var elsewhere []string
	for _, o := range owners {
		if o.Netns == r.netns {
			continue
		}
		r.evidence = append(r.evidence, trace.Evidence{What: next + " configured on", Value: o.Dev + " in " + o.NetnsName, Source: "netlink (addresses of the node's namespaces)"})
		if peer && o.Netns == link.PeerNetns {
			if !d.requestRefused(nf, r, link) {
				d.ownerAnswer(r, link, o)
			}
			return
		}
		elsewhere = append(elsewhere, o.Dev+" in "+o.NetnsName)
	}
	if peer {
		if len(elsewhere) > 0 {
			r.cause = next + " is configured on " + strings.Join(elsewhere, ", ") + ", not on the link of " + r.dev
			r.detail = fmt.Sprintf("%s is on the link of %s in %s, which does not have %s", r.dev, link.PeerIfname, link.PeerNetnsName, next)
			r.fix = append(r.fix, inNetns(r.netnsName, "ip route")+"   # a gateway on the link of "+r.dev+", or "+next+" on "+link.PeerIfname)
			r.sure = r.state != "REACHABLE"
			return
		}
		if !d.requestRefused(nf, r, link) {
			d.proxyAnswer(nf, r, link)
		}
		return
	}
	if len(owners) == 0 && link.Kind == "veth" {
		r.cause = "nothing on this node has " + next
	}
	// A link off this node: the gateway is beyond it.
	r.detail = fmt.Sprintf("%s does not answer %s on %s: it is beyond this host (the router, its address, the VLAN or cable)", next, r.proto(), r.dev)
	if r.cause == "" {
		r.cause = "the gateway does not answer " + r.proto()
	}
	r.fix = append(r.fix, inNetns(r.netnsName, arping(r, next))+"   # does anything answer?", "check the route's gateway "+next+": "+inNetns(r.netnsName, "ip route get "+r.dst.String()))
	r.sure = r.state == "FAILED" || r.state == "INCOMPLETE"
}

func arping(r *resolution, next string) string {
	if r.dst.Is6() {
		return "ndisc6 " + next + " " + r.dev
	}
	return "arping -c 3 -I " + r.dev + " " + next
}

func linkText(up, lower bool, kind string) string {
	s := "down"
	switch {
	case up && lower:
		s = "up"
	case up:
		s = "up, no carrier"
	}
	if kind != "" {
		s += " (" + kind + ")"
	}
	return s
}

// requestRefused says whether the peer's namespace ignores the ARP requests themselves: before
// it answers (as the owner of the address or by proxy), arp_process routes the request with its
// sender address as the source (ip_route_input), so the reverse-path filter and accept_local there
// refuse it silently: no drop is traced, no reply is sent.
func (d *Diagnoser) requestRefused(nf neighFacts, r *resolution, link LinkState) bool {
	if r.dst.Is6() {
		return false
	}
	sender, how := d.arpSender(nf, r)
	if !sender.IsValid() {
		return false
	}
	pns, pdev, snd := link.PeerNetnsName, link.PeerIfname, sender.String()
	r.evidence = append(r.evidence, trace.Evidence{What: "ARP requests' sender address", Value: snd, Source: how})
	read := func(k string) (int, bool) {
		v, err := d.facts.Sysctl(link.PeerNetns, k)
		if err != nil {
			return 0, false
		}
		r.evidence = append(r.evidence, trace.Evidence{What: k, Value: v, Source: "/proc/sys/" + strings.ReplaceAll(k, ".", "/") + " in netns " + pns})
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	for _, o := range nf.AddrOwners(sender) {
		if o.Netns != link.PeerNetns {
			continue
		}
		// IN_DEV_ACCEPT_LOCAL is IN_DEV_ORCONF: either key on lets a local source in.
		all, aok := read("net.ipv4.conf.all.accept_local")
		dev, dok := read("net.ipv4.conf." + pdev + ".accept_local")
		if !aok || !dok || all != 0 || dev != 0 {
			return false
		}
		r.cause = fmt.Sprintf("the ARP requests come from %s, an address %s itself has (on %s): it ignores them (accept_local=0)", snd, pns, o.Dev)
		r.detail = fmt.Sprintf("%s routes each ARP request from its sender %s before answering, and a sender that is one of its own addresses is a martian source there: the requests are ignored, no reply is sent, and no drop is traced", pns, snd)
		r.fix = append(r.fix, inNetns(pns, "ip addr del "+snd+" dev "+o.Dev)+"   # a duplicate of the sender's address", inNetns(pns, "sysctl -w net.ipv4.conf."+pdev+".accept_local=1")+"   # if it is meant to be shared")
		r.sure = true
		return true
	}
	all, aok := read("net.ipv4.conf.all.rp_filter")
	dev, dok := read("net.ipv4.conf." + pdev + ".rp_filter")
	if !aok || !dok {
		return false
	}
	eff := max(all, dev) // IN_DEV_RPFILTER is IN_DEV_MAXCONF
	if eff == 0 {
		return false
	}
	r.evidence = append(r.evidence, trace.Evidence{What: "effective rp_filter on " + pdev, Value: fmt.Sprintf("%d (%s)", eff, rpModes[eff]), Source: "max(all, device): the kernel's IN_DEV_MAXCONF"})
	back, err := nf.NextHop(link.PeerNetns, netip.Addr{}, sender)
	if err == nil {
		r.evidence = append(r.evidence, trace.Evidence{What: "route back to " + snd + " in " + pns, Value: back.Route, Source: "ip route get " + snd + ", netlink in netns " + pns})
	}
	switch {
	case err != nil:
		r.cause = fmt.Sprintf("reverse-path filter (%s) on %s in %s: it has no route back to %s, the ARP requests' sender, and ignores them", rpModes[eff], pdev, pns, snd)
	case eff == 1 && back.Dev != pdev && !routeUsesDev(back.Route, pdev):
		r.cause = fmt.Sprintf("reverse-path filter (strict) on %s in %s: its route back to %s leaves by %s, so it ignores the ARP requests from %s", pdev, pns, snd, back.Dev, snd)
	default:
		return false
	}
	r.detail = fmt.Sprintf("%s routes each ARP request from its sender %s before answering, and the reverse-path filter refuses that source on %s: the requests are ignored, no reply is sent, and no drop is traced", pns, snd, pdev)
	if eff == 1 {
		for _, k := range []struct {
			key string
			v   int
		}{{"net.ipv4.conf.all.rp_filter", all}, {"net.ipv4.conf." + pdev + ".rp_filter", dev}} {
			if k.v == 1 {
				r.fix = append(r.fix, inNetns(pns, "sysctl -w "+k.key+"=2")+"   # loose mode (the effective value is max(all, device))")
			}
		}
	}
	r.fix = append(r.fix, inNetns(pns, "ip route get "+snd)+"   # or make the route back leave by "+pdev)
	r.sure = true
	return true
}

// routeUsesDev says whether a route as `ip route` prints it leaves by dev on any of its paths:
// strict reverse-path filtering accepts a source whose multipath route has a nexthop there.
func routeUsesDev(route, dev string) bool {
	f := strings.Fields(route)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" && f[i+1] == dev {
			return true
		}
	}
	return false
}

// arpSender is the sender address of the ARP requests for r.next, as arp_solicit picks it: the
// queued packet's source when it is the namespace's own and arp_announce is 0, else the address
// the namespace picks for the next hop.
func (d *Diagnoser) arpSender(nf neighFacts, r *resolution) (netip.Addr, string) {
	announce := 0
	for _, k := range []string{"net.ipv4.conf.all.arp_announce", "net.ipv4.conf." + r.dev + ".arp_announce"} {
		if v, err := d.facts.Sysctl(r.netns, k); err == nil {
			n, _ := strconv.Atoi(v)
			announce = max(announce, n)
		}
	}
	if announce == 0 && r.src.IsValid() {
		for _, o := range nf.AddrOwners(r.src) {
			if o.Netns == r.netns {
				return r.src, "the packets' source, an address of " + r.netnsName + " (arp_announce=0)"
			}
		}
	}
	if nh, err := nf.NextHop(r.netns, netip.Addr{}, r.next); err == nil && nh.Src.IsValid() {
		return nh.Src, "the address " + r.netnsName + " picks for " + r.next.String() + " (ip route get " + r.next.String() + ")"
	}
	return netip.Addr{}, ""
}

// ownerAnswer: the next hop is an address of the peer's namespace, so the peer device answers
// for it itself, unless arp_ignore/arp_filter say not to (IPv6: only if the address is on the
// peer device itself).
func (d *Diagnoser) ownerAnswer(r *resolution, link LinkState, o AddrOwner) {
	next, pns, pdev := r.next.String(), link.PeerNetnsName, link.PeerIfname
	src := func(k string) string { return "/proc/sys/" + strings.ReplaceAll(k, ".", "/") + " in netns " + pns }
	if r.dst.Is6() {
		if o.Dev != pdev {
			r.cause = next + " is on " + o.Dev + ", not on " + pdev + " where NDP asks for it"
			r.detail = fmt.Sprintf("IPv6 answers neighbour solicitations only for addresses of the receiving device: %s is on %s in %s, not on %s", next, o.Dev, pns, pdev)
			r.fix = append(r.fix, inNetns(pns, "ip -6 addr add "+next+" dev "+pdev)+"   # or a gateway that "+pdev+" has")
			r.sure = true
			return
		}
		r.cause = next + " on " + pdev + " in " + pns + " does not answer NDP"
		r.fix = append(r.fix, inNetns(pns, "ip -6 addr show dev "+pdev)+"   # tentative/dadfailed?", inNetns(pns, "nft list ruleset")+"   # a filter on ICMPv6?")
		return
	}
	ignore, filter := 0, 0
	var ignKeys []string
	for _, dev := range []string{"all", pdev} {
		k := "net.ipv4.conf." + dev + ".arp_ignore"
		if v, err := d.facts.Sysctl(link.PeerNetns, k); err == nil {
			r.evidence = append(r.evidence, trace.Evidence{What: k, Value: v, Source: src(k)})
			if n, _ := strconv.Atoi(v); n > ignore {
				ignore = n
			}
			ignKeys = append(ignKeys, k)
		}
		k = "net.ipv4.conf." + dev + ".arp_filter"
		if v, err := d.facts.Sysctl(link.PeerNetns, k); err == nil {
			r.evidence = append(r.evidence, trace.Evidence{What: k, Value: v, Source: src(k)})
			if v != "0" {
				filter = 1
			}
		}
	}
	fixIgnore := func() {
		for _, k := range ignKeys {
			r.fix = append(r.fix, inNetns(pns, "sysctl -w "+k+"=0"))
		}
	}
	switch {
	case ignore == 8:
		r.cause = "arp_ignore=8 on " + pdev + " in " + pns + ": it answers no ARP request"
		r.detail = fmt.Sprintf("%s is %s's own (on %s in %s), but arp_ignore=8 (the larger of all's and %s's) makes %s answer no ARP request at all", next, pns, o.Dev, pns, pdev, pdev)
		fixIgnore()
		r.sure = true
	case ignore == 1 && o.Dev != pdev, ignore == 2 && o.Dev != pdev:
		r.cause = fmt.Sprintf("arp_ignore=%d on %s in %s: %s is on %s, not on %s", ignore, pdev, pns, next, o.Dev, pdev)
		r.detail = fmt.Sprintf("arp_ignore=%d answers only for addresses of the receiving device, and %s is on %s, not on %s", ignore, next, o.Dev, pdev)
		fixIgnore()
		r.fix = append(r.fix, inNetns(pns, "ip addr add "+next+"/32 dev "+pdev)+"   # or the address on the device that receives the requests")
		r.sure = true
	case ignore == 2:
		r.cause = "arp_ignore=2 on " + pdev + " in " + pns + ": it answers only senders in " + next + "'s subnet"
		r.detail = fmt.Sprintf("arp_ignore=2 answers only requests whose sender address (%s) is in the subnet of %s", r.src, next)
		fixIgnore()
		r.sure = true
	case ignore == 3 && o.Dev == "lo":
		r.cause = "arp_ignore=3 on " + pdev + " in " + pns + ": " + next + " has host scope"
		fixIgnore()
		r.sure = true
	case filter == 1:
		r.cause = "arp_filter on " + pdev + " in " + pns + ": the route from " + next + " back to " + r.src.String() + " may not go out " + pdev
		r.fix = append(r.fix, inNetns(pns, "ip route get "+r.src.String()+" from "+next)+"   # must leave by "+pdev, inNetns(pns, "sysctl -w net.ipv4.conf.all.arp_filter=0"))
	default:
		r.cause = next + " on " + o.Dev + " in " + pns + " does not answer ARP"
		r.detail = fmt.Sprintf("%s has %s and nothing in its arp_ignore/arp_filter settings stops the answer: look at ARP filtering (arptables, nft arp family) there", pns, next)
		r.fix = append(r.fix, inNetns(pns, "nft list ruleset")+"   # an arp family table?")
	}
}

// proxyAnswer: the next hop is no address of the peer's namespace, so only proxy ARP (proxy NDP)
// on the peer answers for it, as Calico's 169.254.1.1: the kernel does so when proxy_arp is on,
// the peer's namespace forwards, and its route to the address leaves by another device.
func (d *Diagnoser) proxyAnswer(nf neighFacts, r *resolution, link LinkState) {
	next, pns, pdev := r.next.String(), link.PeerNetnsName, link.PeerIfname
	src := func(k string) string { return "/proc/sys/" + strings.ReplaceAll(k, ".", "/") + " in netns " + pns }
	read := func(k string) (string, bool) {
		v, err := d.facts.Sysctl(link.PeerNetns, k)
		if err == nil {
			r.evidence = append(r.evidence, trace.Evidence{What: k, Value: v, Source: src(k)})
		}
		return v, err == nil
	}
	if r.dst.Is6() {
		v, _ := read("net.ipv6.conf." + pdev + ".proxy_ndp")
		r.cause = "nothing on this node has " + next + " and proxy NDP on " + pdev + " in " + pns + " does not answer for it"
		r.detail = fmt.Sprintf("%s is configured on no device of this node; %s in %s (the other end of %s) would answer only with proxy_ndp=1 (now %s) and a proxy entry for it", next, pdev, pns, r.dev, orDefault(v, "unknown"))
		r.fix = append(r.fix, inNetns(r.netnsName, "ip -6 route")+"   # is "+next+" the right gateway?", inNetns(pns, "ip -6 addr add "+next+" dev "+pdev)+"   # or answer for it there")
		r.sure = r.state == "FAILED" || r.state == "INCOMPLETE"
		return
	}
	all, _ := read("net.ipv4.conf.all.proxy_arp")
	dev, _ := read("net.ipv4.conf." + pdev + ".proxy_arp")
	if all != "1" && dev != "1" {
		r.cause = "nothing answers ARP for " + next + ": no device of this node has it, and proxy_arp is off on " + pdev + " in " + pns
		r.detail = fmt.Sprintf("%s is configured on no device of this node, and %s in %s (the other end of %s) does not answer for it by proxy ARP", next, pdev, pns, r.dev)
		r.fix = append(r.fix, inNetns(r.netnsName, "ip route")+"   # is "+next+" the right gateway?",
			inNetns(pns, "sysctl -w net.ipv4.conf."+pdev+".proxy_arp=1")+"   # if "+pdev+" is meant to answer for it (Calico)")
		r.sure = r.state == "FAILED" || r.state == "INCOMPLETE"
		return
	}
	ipf, _ := read("net.ipv4.ip_forward")
	fwd, fok := read("net.ipv4.conf." + pdev + ".forwarding")
	if fok && fwd == "0" || ipf == "0" {
		key := "net.ipv4.conf." + pdev + ".forwarding"
		if ipf == "0" {
			key = "net.ipv4.ip_forward"
		}
		r.cause = "forwarding is off in " + pns + " (" + key + "=0), which stops proxy ARP on " + pdev
		r.detail = fmt.Sprintf("only proxy ARP on %s in %s answers for %s, and the kernel answers by proxy only for an address it would forward to: with forwarding off it does not", pdev, pns, next)
		r.fix = append(r.fix, inNetns(pns, "sysctl -w "+key+"=1")+"   # and persist it in /etc/sysctl.d/")
		r.sure = true
		return
	}
	// Forwarding on: the peer's namespace must route the address out another device.
	nh, err := nf.NextHop(link.PeerNetns, netip.Addr{}, r.next)
	if err == nil {
		r.evidence = append(r.evidence, trace.Evidence{What: "route to " + next + " in " + pns, Value: nh.Route, Source: "ip route get, netlink in netns " + pns})
	}
	switch {
	case err != nil:
		r.cause = pns + " has no route to " + next + ", so proxy ARP on " + pdev + " does not answer for it"
		r.fix = append(r.fix, inNetns(pns, "ip route get "+next))
		r.sure = true
	case nh.Dev == pdev:
		r.cause = pns + " routes " + next + " back out " + pdev + ", so proxy ARP there does not answer for it"
		r.fix = append(r.fix, inNetns(pns, "ip route get "+next)+"   # must leave by another device than "+pdev)
		r.sure = true
	default:
		r.cause = "proxy ARP on " + pdev + " in " + pns + " should answer for " + next + " but did not"
		r.detail = "proxy_arp and forwarding are on and the route leaves by " + nh.Dev + ": look at ARP filtering there, or proxy_delay"
		r.fix = append(r.fix, inNetns(pns, "nft list ruleset")+"   # an arp family table?")
	}
}

// neighbourWaiting concludes a flow whose requests were last seen queued for their next hop's
// address: nothing answered while tracing, and the entry had not failed yet when the run
// stopped.
func (d *Diagnoser) neighbourWaiting(_ *trace.Trace, c *tally) (trace.Verdict, bool) {
	w := c.wait
	if c.waiting == 0 || (c.rep > 0 && c.lastReplyNS > w.lastNS) {
		return trace.Verdict{}, false
	}
	r := &resolution{netns: w.netns, netnsName: w.netnsName, dev: w.dev, src: w.src, dst: w.dst}
	if w.hasRoute {
		r.route = &w.route
	}
	d.resolve(r)
	if w.unplaced && r.state != "INCOMPLETE" && r.state != "FAILED" && r.state != "none" {
		// Nothing but the neighbour entry ties an unplaced free to ARP/NDP: without it, the
		// packet's end is just not known.
		return trace.Verdict{}, false
	}
	if w.loc == "" {
		w.loc = "a place this kernel does not report"
	}
	place := (trace.Place{Netns: w.netns, NetnsName: w.netnsName, Ifname: w.dev}).String()
	v := trace.Verdict{Outcome: "unknown", Cause: "waiting for " + r.proto() + " of " + r.nextText() + " on " + r.dev}
	if r.cause != "" {
		v.Cause += ": " + r.cause
	}
	v.Summary = fmt.Sprintf("%d %s packet(s) last seen in %s waiting for %s of the next hop %s (only the %s probe's copy was freed, at %s; packets queued behind it pass no tracepoint): not delivered, no answer while tracing",
		c.waiting, w.flow, place, r.proto(), r.nextText(), r.proto(), w.loc)
	if r.routeTxt != "" {
		v.Summary += "; route " + r.routeTxt
	}
	switch r.state {
	case "FAILED":
		v.Summary += "; the entry has FAILED since: the queued packets were dropped (NEIGH_FAILED) after the trace stopped"
	case "":
		v.Summary += "; the trace stopped before the entry failed or resolved"
	default:
		v.Summary += "; the trace stopped before the entry failed (it is " + r.state + " now)"
	}
	if t, ev := d.neighTimers(r); t != "" {
		r.evidence = append(r.evidence, ev...)
		if r.state != "FAILED" {
			v.Summary += "; it fails " + t
		}
	}
	if r.detail != "" {
		v.Summary += "; " + r.detail
	}
	v.Evidence = append([]trace.Evidence{{What: "packets waiting", Value: fmt.Sprintf("%d (last seen: the %s probe's copy freed at %s in %s)", c.waiting, r.proto(), w.loc, place), Source: "skb:consume_skb"}}, r.evidence...)
	v.Fix = r.fix
	v.Confidence = "medium"
	if r.sure && !w.unplaced {
		v.Confidence = "high"
	}
	if r.cause == "" {
		v.Confidence = "low"
	}
	if w.unplaced {
		v.Unknown = append(v.Unknown, trace.NotKnown{
			What:   "that the freed copy was the ARP/NDP probe's: this kernel does not say where packets are freed (consume_skb has no location before 6.3); the neighbour entry, " + orDefault(r.state, "unread") + ", says it waits",
			Settle: inNetns(w.netnsName, "ip neigh show dev "+r.dev) + " while the traffic is sent (INCOMPLETE, then FAILED)",
		})
	}
	return v, true
}

// waitInfo is what the tally keeps of a packet last seen queued for its neighbour.
type waitInfo struct {
	netns               uint32
	netnsName, dev, loc string
	src, dst            netip.Addr
	flow                trace.Direction
	route               trace.Route
	hasRoute            bool
	lastNS              uint64
	// unplaced: the kernel did not say where the copy was freed; only the node's neighbour
	// entry can say the packet waits for it.
	unplaced bool
}

// waitingAt says where p was last seen queued for its next hop's address: a packet whose end
// was not seen and a neighbour probe's copy of which was freed after its own last hop.
func waitingAt(p *trace.Packet) (waitInfo, bool) {
	if p.Fate.Outcome != trace.Unknown || !strings.Contains(p.Fate.Note, "waiting for its next hop's address") {
		return waitInfo{}, false
	}
	var w waitInfo
	found := false
	for i := range p.Hops {
		h := &p.Hops[i]
		// A consume the kernel did not place (before 6.3), alone: it may be the probe's copy.
		unplaced := h.Event == trace.KindConsume && h.Location == "" && len(p.Hops) == 1
		if h.Copy && (neighProbeFn(h.Location) || unplaced) {
			w.unplaced = unplaced
			w.netns, w.netnsName, w.dev, w.loc, w.lastNS, found = h.Netns, h.NetnsName, h.Ifname, h.Location, h.TimeNS, true
			if h.Tuple != nil {
				w.src, w.dst = h.Tuple.Src, h.Tuple.Dst
			}
		}
	}
	if !found {
		return w, false
	}
	if rt := routeIn(p.Hops, w.netns); rt != nil {
		w.route, w.hasRoute = *rt, true
		if w.dev == "" {
			w.dev = rt.OutIfname
		}
	}
	if !w.dst.IsValid() {
		w.src, w.dst = p.Tuple.Src, p.Tuple.Dst
	}
	w.flow = p.Flow
	return w, true
}

func neighProbeFn(loc string) bool {
	switch funcOf(loc) {
	case "__neigh_event_send", "neigh_probe", "neigh_timer_handler":
		return true
	}
	return false
}

// neighQueue says whether a free is of the packets queued in a neighbour entry as the entry
// fails or is destroyed (neigh_invalidate, neigh_destroy, a flush): whatever the reason says
// (QUEUE_PURGE when destroyed), they were waiting for the next hop's address.
func neighQueue(loc string) bool {
	switch funcOf(loc) {
	case "neigh_invalidate", "neigh_destroy", "__neigh_ifdown", "neigh_flush_dev", "neigh_timer_handler", "__neigh_event_send", "neigh_del_timer":
		return true
	}
	return false
}

// neighTimers says when an unanswered entry of the device fails, from its neighbour timers
// read live: after (mcast_solicit + app_solicit) probes retrans_time_ms apart (the unicast
// probes count only when an entry that was valid is probed again).
func (d *Diagnoser) neighTimers(r *resolution) (string, []trace.Evidence) {
	if d.facts == nil || r.dev == "" {
		return "", nil
	}
	family := "ipv4"
	if r.dst.Is6() {
		family = "ipv6"
	}
	base := "net." + family + ".neigh." + r.dev + "."
	n := map[string]int{}
	var ev []trace.Evidence
	for _, k := range []string{"mcast_solicit", "app_solicit", "retrans_time_ms"} {
		v, err := d.facts.Sysctl(r.netns, base+k)
		if err != nil {
			return "", nil
		}
		n[k], _ = strconv.Atoi(v)
		ev = append(ev, trace.Evidence{What: base + k, Value: v, Source: "/proc/sys/" + strings.ReplaceAll(base+k, ".", "/") + " in netns " + r.netnsName})
	}
	probes := n["mcast_solicit"] + n["app_solicit"]
	return fmt.Sprintf("after %d unanswered probes %d ms apart (~%d ms; %s*), then drops its queued packets (NEIGH_FAILED)",
		probes, n["retrans_time_ms"], probes*n["retrans_time_ms"], base), ev
}
