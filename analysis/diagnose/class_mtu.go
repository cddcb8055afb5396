package diagnose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// mtuClass: a packet bigger than the MTU of the device it must leave by, which may not be
// fragmented (IPv4 with DF, every IPv6 packet a router forwards).
var _ = register(Class{
	Name:       "mtu",
	Order:      12,
	Recognises: "`PKT_TOO_BIG` (at `ip_forward`, `ip6_forward`, `ip_fragment`...)",
	Reads:      "the packet's size from the trace; live: the route's device, its MTU, the route's `mtu` (and `lock`) and the path MTU the kernel's lookup reports",
	Fix:        "`ip link set dev <dev> mtu <N>` where the path allows it, or the sender's MTU (pod/CNI MTU), or TCP MSS clamping",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "PKT_TOO_BIG" || (noReason(s.Reason) && fn == "ip_forward")
	},
	Explain: func(d *Diagnoser, f *finding) {
		if noReason(f.site.Reason) {
			d.forwardNoReason(f)
			return
		}
		d.mtu(f)
	},
})

// counterFacts reads a namespace's protocol counters (nstat's names); a live run has it.
type counterFacts interface {
	Counters(netns uint32) (map[string]uint64, error)
}

// forwardNoReason explains a drop in ip_forward or ip6_forward on a kernel that gives no drop
// reason (before 5.17): a packet seen going round is a loop, one bigger than the MTU read live
// is too big; otherwise it says what it cannot tell apart.
func (d *Diagnoser) forwardNoReason(f *finding) {
	if len(loopPlaces(f)) > 0 {
		f.class = "loop"
		d.loop(f)
		return
	}
	g := *f
	g.evidence = slices.Clone(f.evidence)
	d.mtu(&g)
	if g.sure {
		*f = g
		f.class = "mtu"
		return
	}
	fn := funcOf(f.site.Location)
	hd := f.headers()
	f.cause = "dropped while forwarding (this kernel gives no reason)"
	f.meaning = fmt.Sprintf("this kernel reports no drop reason: in %s that is its TTL running out, a size over the MTU with DF set, "+
		"or a frame not addressed to this host; the trace saw no loop and the packet is not bigger than the route's MTU now", fn)
	f.fix = []string{inNetns(f.site.NetnsName, ipCmd(hd.Dst)+" route get "+hd.Dst.String()), "traceroute " + hd.Dst.String() + "   # from the sender: a loop repeats hops"}
}

func (d *Diagnoser) mtu(f *finding) {
	hd := f.headers()
	ns := f.site.NetnsName
	v6 := hd.Dst.Is6() && !hd.Dst.Is4In6()
	size := int(f.dropHop().Len)
	sizeText := "its size"
	if size > 0 {
		sizeText = fmt.Sprintf("%d bytes", size)
		f.evidence = append(f.evidence, trace.Evidence{What: "packet size", Value: fmt.Sprintf("%d bytes (IP packet)", size), Source: "skb:kfree_skb"})
	}
	// The device it was to leave by: the trace's route lookup, else the live one.
	out := ""
	for _, h := range f.example.Hops {
		if h.Route != nil && h.Netns == f.site.Netns && h.Route.Err == 0 && h.Route.OutIfname != "" {
			out = h.Route.OutIfname
		}
	}
	f.evidence = append(f.evidence, f.routeEvidence()...)
	icmp := "ICMP fragmentation needed (type 3 code 4, carrying the MTU)"
	if v6 {
		icmp = "ICMPv6 Packet Too Big (carrying the MTU)"
	}
	mtuText, mtu := "the MTU", 0
	if rf, ok := d.facts.(routeFacts); ok && d.facts != nil {
		q := RouteQuery{Src: hd.Src, Dst: hd.Dst, IifName: f.receivedIn()}
		if dec, err := rf.RouteDecision(f.site.Netns, q); err == nil {
			if dec.Dev != "" {
				out = dec.Dev
			}
			src := "netlink in netns " + ns
			f.evidence = append(f.evidence, trace.Evidence{What: "route", Value: dec.Route, Source: src})
			if dec.LinkMTU > 0 {
				f.evidence = append(f.evidence, trace.Evidence{What: "mtu of " + dec.Dev, Value: fmt.Sprint(dec.LinkMTU), Source: src})
				mtu = dec.LinkMTU
			}
			if dec.RouteMTU > 0 {
				lock := ""
				if dec.MTULock {
					lock = "lock "
				}
				f.evidence = append(f.evidence, trace.Evidence{What: "route mtu", Value: lock + fmt.Sprint(dec.RouteMTU), Source: src})
				mtu = dec.RouteMTU
			}
			if dec.PathMTU > 0 && dec.PathMTU != mtu {
				f.evidence = append(f.evidence, trace.Evidence{What: "path mtu (ip route get)", Value: fmt.Sprint(dec.PathMTU), Source: src})
				mtu = dec.PathMTU
			}
		} else {
			f.evidence = append(f.evidence, trace.Evidence{What: "route decision", Value: err.Error(), Source: "read failed"})
		}
	}
	if mtu > 0 {
		mtuText = fmt.Sprintf("the MTU %d", mtu)
	}
	// Whether the ICMP error went out: the namespace's counter of them, as nstat names it.
	sent := ""
	if cf, ok := d.facts.(counterFacts); ok && d.facts != nil {
		key := "IcmpMsgOutType3"
		what := "ICMP destination unreachable (fragmentation needed among them)"
		if v6 {
			key, what = "Icmp6OutPktTooBigs", "ICMPv6 Packet Too Big"
		}
		if c, err := cf.Counters(f.site.Netns); err == nil {
			n := c[key]
			f.evidence = append(f.evidence, trace.Evidence{What: key + " in " + ns, Value: fmt.Sprintf("%d (%s sent since the namespace was made)", n, what),
				Source: "/proc/net/snmp" + map[bool]string{true: "6", false: ""}[v6] + " in netns " + ns})
			if n == 0 {
				sent = fmt.Sprintf(" The node's counter %s is 0: no such ICMP error went out (rate limited by net.ipv4.icmp_ratelimit, or blocked).", key)
			} else {
				sent = fmt.Sprintf(" The node counted %d sent (%s).", n, key)
			}
		}
	}
	where := "the device it was to leave by"
	if out != "" {
		where = out
	}
	dfText := "its DF (don't fragment) bit is set"
	if v6 {
		dfText = "IPv6 routers never fragment"
	}
	f.cause = fmt.Sprintf("packet too big for %s of %s", mtuText, where)
	if size > 0 && mtu > 0 {
		f.cause = fmt.Sprintf("packet of %d bytes too big for the MTU %d of %s", size, mtu, where)
	}
	f.meaning = fmt.Sprintf("the packet (%s) is bigger than %s of %s and %s, so %s cannot fragment it: the kernel drops it and sends %s back to %s. "+
		"This trace follows the flow's own packets, not that ICMP error (trace --proto icmp --dst %s to see it); "+
		"if the sender never lowers its size, the ICMP error is filtered on its way back or ignored (a PMTU black hole)",
		sizeText, mtuText, where, dfText, ns, icmp, hd.Src, hd.Src)
	f.meaning += "." + sent
	f.meaning = strings.TrimSuffix(f.meaning, ".")
	dev := out
	if dev == "" {
		dev = "<dev>"
	}
	n := "<N>"
	if size > 0 {
		n = fmt.Sprint(size)
	}
	f.fix = []string{
		inNetns(ns, fmt.Sprintf("ip link set dev %s mtu %s", dev, n)) + "   # only if the link beyond " + dev + " carries it",
		fmt.Sprintf("or lower the sender's MTU (the pod's eth0 / the CNI's MTU setting) to %s or less", orDefault(mtuNum(mtu), "the path MTU")),
		"or clamp TCP's MSS: nft add rule inet filter forward tcp flags syn tcp option maxseg size set rt mtu",
	}
	f.sure = mtu > 0 && size > mtu
}

func mtuNum(m int) string {
	if m == 0 {
		return ""
	}
	return fmt.Sprint(m)
}
