package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// The forwarding class: a packet the kernel would not forward (ip_error): incidents 000 and 003.
var _ = register(Class{
	Name:       "forwarding",
	Order:      10,
	Recognises: "`IP_INADDRERRORS` / `IP_INNOROUTES` at `ip_error`, or a drop in `ip6_forward`",
	Reads:      "`net.ipv4.ip_forward`, `net.ipv4.conf.<in-dev>.forwarding` (IPv6 alike), the route lookups from the trace",
	Fix:        "the exact `sysctl -w`, in that namespace, and where to persist it; with forwarding on, the route (class `route`)",
	Drop: func(s *trace.DropSite, fn string) bool {
		// ip6_forward also drops what is too big (mtu) and what has no hops left (loop).
		// ip6_pkt_prohibit and its kin are the route's own (class route), whatever the reason.
		if strings.HasPrefix(fn, "ip6_pkt_") || strings.HasPrefix(fn, "dst_discard") {
			return false
		}
		return s.Reason == "IP_INADDRERRORS" || s.Reason == "IP_INNOROUTES" || fn == "ip_error" ||
			(fn == "ip6_forward" && s.Reason != "PKT_TOO_BIG" && s.Reason != "IP_INHDR")
	},
	Explain: (*Diagnoser).forwarding,
})

// forwarding explains a packet the kernel would not forward (ip_error): incidents 000 and 003.
func (d *Diagnoser) forwarding(f *finding) {
	v6 := f.headers().Src.Is6()
	dev := f.site.Ifname
	global, devKey := "net.ipv4.ip_forward", "net.ipv4.conf."+dev+".forwarding"
	if v6 {
		global, devKey = "net.ipv6.conf.all.forwarding", "net.ipv6.conf."+dev+".forwarding"
	}
	f.evidence = append(f.evidence, f.routeEvidence()...)
	persist := "persist it in /etc/sysctl.d/ (and check what turned it off: a network restart or a script)"
	if d.facts == nil {
		f.cause = "forwarding disabled or no route"
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+global+"=1"), inNetns(f.site.NetnsName, "sysctl -w "+devKey+"=1"), persist}
		return
	}
	g, gerr := d.facts.Sysctl(f.site.Netns, global)
	dv, derr := d.facts.Sysctl(f.site.Netns, devKey)
	if gerr == nil {
		f.evidence = append(f.evidence, trace.Evidence{What: global, Value: g, Source: f.sysctlSource(global)})
	}
	if derr == nil && dev != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: devKey, Value: dv, Source: f.sysctlSource(devKey)})
	}
	switch {
	case gerr == nil && g == "0":
		f.cause = "forwarding disabled (" + global + "=0)"
		f.meaning = fmt.Sprintf("the node does not forward packets: %s is 0, so a packet arriving on %s for another host is dropped", global, dev)
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+global+"=1"), persist}
		f.sure = true
	case derr == nil && dv == "0":
		f.cause = "forwarding disabled on " + dev + " (" + devKey + "=0)"
		f.meaning = fmt.Sprintf("forwarding is off for packets arriving on %s (%s=0) although %s is %s: the device's setting decides", dev, devKey, global, g)
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+devKey+"=1"), persist}
		f.sure = true
	case gerr == nil && derr == nil && noReason(f.site.Reason) && strings.HasPrefix(f.site.Location, "ip6_forward+"):
		// A kernel without drop reasons: ip6_forward also drops what is too big or loops.
		d.forwardNoReason(f)
	case gerr == nil && derr == nil:
		// Forwarding is on: the route decided. The route class names it.
		f.class = routeClass.Name
		d.routeDecision(f, true)
	default:
		f.cause = "forwarding disabled or no route"
		f.evidence = append(f.evidence, trace.Evidence{What: "sysctl", Value: fmt.Sprint(errorsText(gerr, derr)), Source: "read failed"})
	}
}
