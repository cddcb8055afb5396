package diagnose

import (
	"fmt"
	"net/netip"

	"github.com/pathtrace/pathtrace/trace"
)

// addrFacts names the local device that holds an address (an optional Facts extension).
type addrFacts interface {
	AddrOwner(netns uint32, addr netip.Addr) (dev, prefix string, err error)
}

var localSourceClass = register(Class{
	Name:       "martian-source",
	Order:      21,
	Recognises: "`IP_LOCAL_SOURCE`, `IP_INVALID_SOURCE` (martian sources)",
	Reads:      "`accept_local` of `all` and the device (either enables it: IN_DEV_ORCONF), the local device that holds the source address",
	Fix:        "the address conflict (`ip addr del`), or `accept_local=1` when local sources are meant; `log_martians=1` to log the others",
	Drop: func(s *trace.DropSite, _ string) bool {
		return s.Reason == "IP_LOCAL_SOURCE" || s.Reason == "IP_INVALID_SOURCE"
	},
	Explain: (*Diagnoser).martianSource,
})

func (d *Diagnoser) martianSource(f *finding) {
	dev, src := f.site.Ifname, f.headers().Src
	if f.site.Reason == "IP_INVALID_SOURCE" {
		f.cause = "martian source " + src.String()
		f.meaning = fmt.Sprintf("its source %s cannot be a sender's address (broadcast, multicast, 0.0.0.0/8, or not routable back on %s): a martian", src, dev)
		f.fix = []string{
			inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf.all.log_martians=1   # the kernel then logs each one (dmesg) with its device"),
			"find the sender of " + src.String() + " (a misconfigured host, or spoofed traffic)",
		}
		f.sure = true
		return
	}
	f.cause = "source address is local (" + src.String() + ")"
	f.meaning = fmt.Sprintf("it arrived on %s with source %s, which is one of this namespace's own addresses: the kernel drops it unless accept_local is on", dev, src)
	f.fix = []string{inNetns(f.site.NetnsName, "ip -br addr | grep -w "+src.String()+"   # which device holds it; two hosts with the same address is a conflict")}
	if d.facts == nil {
		return
	}
	keys := []string{"net.ipv4.conf.all.accept_local", "net.ipv4.conf." + dev + ".accept_local"}
	on := false
	for _, k := range keys {
		if v, err := d.facts.Sysctl(f.site.Netns, k); err == nil {
			f.evidence = append(f.evidence, trace.Evidence{What: k, Value: v, Source: f.sysctlSource(k)})
			on = on || v != "0"
		}
	}
	owner := ""
	if af, ok := d.facts.(addrFacts); ok {
		if od, prefix, err := af.AddrOwner(f.site.Netns, src); err != nil {
			f.evidence = append(f.evidence, trace.Evidence{What: "device holding " + src.String(), Value: err.Error(), Source: "read failed"})
		} else if od != "" {
			owner = od
			f.evidence = append(f.evidence, trace.Evidence{What: "device holding " + src.String(), Value: prefix + " on " + od, Source: "netlink (ip addr) in netns " + f.site.NetnsName})
			f.sure = !on
			f.cause = fmt.Sprintf("source address is local (%s is on %s here)", src, od)
			f.meaning = fmt.Sprintf("it arrived on %s with source %s, which this namespace also holds (%s on %s), and accept_local is 0 on both all and %s (either one enables it): an address conflict, or traffic reflected back", dev, src, prefix, od, dev)
			f.fix = []string{
				inNetns(f.site.NetnsName, "ip addr del "+prefix+" dev "+od+"   # if this node should not hold it (an address conflict)"),
				inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf."+dev+".accept_local=1   # only if local sources are meant to arrive on "+dev),
			}
		}
	}
	if owner == "" && on {
		f.meaning += " (accept_local is on now: changed since the drop?)"
	}
}

var localnetClass = register(Class{
	Name:       "martian-localnet",
	Order:      22,
	Recognises: "`IP_LOCALNET` (a 127/8 address from a device other than loopback)",
	Reads:      "`route_localnet` of `all` and the device (either enables it: IN_DEV_NET_ROUTE_LOCALNET), whether a NAT on the node made the 127/8 address",
	Fix:        "`sysctl -w net.ipv4.conf.<dev>.route_localnet=1` in that namespace, or a DNAT to a non-loopback address",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "IP_LOCALNET" },
	Explain:    (*Diagnoser).localnet,
})

func (d *Diagnoser) localnet(f *finding) {
	dev := f.site.Ifname
	h := f.headers()
	which, addr := "destination", h.Dst
	if !h.Dst.IsLoopback() && h.Src.IsLoopback() {
		which, addr = "source", h.Src
	}
	f.cause = fmt.Sprintf("%s %s from %s (route_localnet=0)", addr, which, dev)
	nat := ""
	if orig := f.example.Tuple; which == "destination" && orig.Dst != h.Dst && orig.Dst.IsValid() {
		nat = fmt.Sprintf(" (rewritten from %s by a DNAT on this node: a NodePort or port-forward to localhost)", orig.Dst)
		f.evidence = append(f.evidence, trace.Evidence{What: "destination NAT", Value: orig.Dst.String() + " -> " + h.Dst.String(), Source: "the packet's headers along its hops"})
	}
	f.meaning = fmt.Sprintf("it came in on %s with %s %s%s: the kernel routes 127.0.0.0/8 from a device other than loopback only when route_localnet is 1 (on all or on %s), so it dropped it as a martian", dev, which, addr, nat, dev)
	devKey := "net.ipv4.conf." + dev + ".route_localnet"
	f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w "+devKey+"=1   # what kube-proxy sets for NodePorts on localhost"), "or DNAT to an address other than 127.0.0.0/8"}
	if d.facts == nil {
		f.cause = fmt.Sprintf("%s %s from %s", addr, which, dev)
		return
	}
	on, read := false, 0
	for _, k := range []string{"net.ipv4.conf.all.route_localnet", devKey} {
		if v, err := d.facts.Sysctl(f.site.Netns, k); err == nil {
			read++
			f.evidence = append(f.evidence, trace.Evidence{What: k, Value: v, Source: f.sysctlSource(k)})
			on = on || v != "0"
		}
	}
	switch {
	case read == 2 && !on:
		f.sure = true
	case on:
		f.cause = fmt.Sprintf("%s %s from %s", addr, which, dev)
		f.meaning += " (route_localnet is on now: changed since the drop?)"
	}
}
