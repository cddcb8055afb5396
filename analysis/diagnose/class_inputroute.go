package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// Before 5.17 the kernel reports no reason for the IPv4 input route's refusals: rp_filter, a
// local or martian source, a 127/8 address all free the packet at the same place in
// ip_rcv_finish(_core). The node's state tells them apart, when it shows one of them.
var _ = register(Class{
	Name:       "input-route-inferred",
	Order:      23,
	Recognises: "a drop without reason in `ip_rcv_finish_core` (or its inlining callers `ip_rcv_finish`, `ip_list_rcv_finish`, `ip_sublist_rcv`; kernels before 5.17)",
	Reads:      "what the rp-filter, martian-source and martian-localnet classes read, to find which one the node shows",
	Fix:        "as the class it settles on, with medium confidence; otherwise `log_martians=1` and the counters",
	Drop: func(s *trace.DropSite, fn string) bool {
		// ip_rcv_finish_core frees the packet itself; inlined, the location is its caller's.
		return noReason(s.Reason) && (strings.HasPrefix(fn, "ip_rcv_finish_core") || fn == "ip_rcv_finish" ||
			strings.HasPrefix(fn, "ip_list_rcv_finish") || strings.HasPrefix(fn, "ip_sublist_rcv"))
	},
	Explain: (*Diagnoser).inputRoute,
})

func (d *Diagnoser) inputRoute(f *finding) {
	h := f.headers()
	dev := f.site.Ifname
	note := func(what string) {
		f.site.Reason = ""
		f.sure = false
		f.meaning += " (the kernel gives no specific drop reason here: " + f.site.Location + " drops for several input-route refusals, and " + what + ")"
	}
	if d.facts != nil && h.Src.Is4() {
		sysOn := func(keys ...string) (on bool, read int) {
			for _, k := range keys {
				if v, err := d.facts.Sysctl(f.site.Netns, k); err == nil {
					read++
					on = on || v != "0"
				}
			}
			return on, read
		}
		if h.Dst.IsLoopback() || h.Src.IsLoopback() {
			if on, n := sysOn("net.ipv4.conf.all.route_localnet", "net.ipv4.conf."+dev+".route_localnet"); n == 2 && !on {
				f.class, f.site.Reason = localnetClass.Name, "IP_LOCALNET"
				d.localnet(f)
				note("it carries a 127/8 address with route_localnet off")
				return
			}
		}
		if af, ok := d.facts.(addrFacts); ok {
			if owner, _, err := af.AddrOwner(f.site.Netns, h.Src); err == nil && owner != "" {
				if on, n := sysOn("net.ipv4.conf.all.accept_local", "net.ipv4.conf."+dev+".accept_local"); n == 2 && !on {
					f.class, f.site.Reason = localSourceClass.Name, "IP_LOCAL_SOURCE"
					d.martianSource(f)
					note("its source is held on " + owner + " here with accept_local off")
					return
				}
			}
		}
		if h.Src.IsMulticast() || h.Src.IsUnspecified() || h.Src.As4()[0] == 0 || h.Src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			f.class, f.site.Reason = localSourceClass.Name, "IP_INVALID_SOURCE"
			d.martianSource(f)
			note("its source address is a martian")
			return
		}
		all, aerr := d.facts.Sysctl(f.site.Netns, "net.ipv4.conf.all.rp_filter")
		dv, derr := d.facts.Sysctl(f.site.Netns, "net.ipv4.conf."+dev+".rp_filter")
		a, _ := strconv.Atoi(all)
		b, _ := strconv.Atoi(dv)
		if aerr == nil && derr == nil && max(a, b) > 0 {
			if rb, ok := d.facts.(routeBackFacts); ok {
				if r, err := rb.RouteBack(f.site.Netns, h.Src); err != nil || !strings.Contains(r+" ", " dev "+dev+" ") {
					f.class, f.site.Reason = rpFilterClass.Name, "IP_RPFILTER"
					d.rpFilter(f)
					note("rp_filter is on while the route back to " + h.Src.String() + " does not go out " + dev)
					return
				}
			}
		}
	}
	f.class = reasonClass.Name
	f.cause = "refused by the IPv4 input route (no specific drop reason from the kernel)"
	f.meaning = fmt.Sprintf("dropped at %s: the input route lookup refused it (reverse-path filter, a local or martian source, a 127/8 address), and the node's state now shows none of them", f.site.Location)
	f.fix = []string{
		inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf.all.log_martians=1   # the kernel then logs martians (dmesg)"),
		inNetns(f.site.NetnsName, "nstat -az TcpExtIPReversePathFilter IpInAddrErrors   # which grows with the drops"),
		inNetns(f.site.NetnsName, fmt.Sprintf("ip route get %s from %s iif %s", h.Dst, h.Src, dev)),
	}
}
