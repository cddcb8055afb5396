package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "vxlan-vni",
	Order:      45,
	Recognises: "`VXLAN_VNI_NOT_FOUND`, `VXLAN_INVALID_HDR`",
	Reads:      "the packet's VNI (its VXLAN header, read at the drop) and the namespace's VXLAN devices: VNI, port, underlay",
	Fix:        "the VNI of the sender's and this node's VXLAN devices must match (`ip -d link show type vxlan` on both)",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "VXLAN_VNI_NOT_FOUND" || s.Reason == "VXLAN_INVALID_HDR" || (noReason(s.Reason) && fn == "vxlan_rcv")
	},
	Explain: (*Diagnoser).vxlanVNI,
})

func (d *Diagnoser) vxlanVNI(f *finding) {
	hop := f.dropHop()
	in := f.headers()
	ns := f.site.NetnsName
	outer, port := "", uint16(0)
	if o := hop.Outer; o != nil {
		outer = fmt.Sprintf(" came in %s:%d > %s:%d", o.Src, o.Sport, o.Dst, o.Dport)
		port = o.Dport
	}
	portText := "its UDP port"
	if port != 0 {
		portText = fmt.Sprintf("UDP port %d", port)
	}
	if f.site.Reason == "VXLAN_INVALID_HDR" {
		f.cause = "invalid VXLAN header"
		f.meaning = fmt.Sprintf("an overlay packet (VXLAN, inner %s > %s)%s with a VXLAN header the device on %s does not accept (flags, or a GBP/GPE extension it was not made with)", in.Src, in.Dst, outer, portText)
		f.fix = []string{inNetns(ns, "ip -d link show type vxlan   # compare the flags (gbp, gpe) with the sender's device")}
		return
	}
	vni := ""
	if hop.Encap == "vxlan" && hop.VNI != 0 {
		vni = fmt.Sprint(hop.VNI)
		f.evidence = append(f.evidence, trace.Evidence{What: "the packet's VNI", Value: vni, Source: "its VXLAN header, read at the drop"})
	}
	if vni != "" {
		f.cause = "no VXLAN device for VNI " + vni + " on " + portText
		f.meaning = fmt.Sprintf("an overlay packet (VXLAN VNI %s, inner %s > %s)%s, but no VXLAN device in %s on %s has VNI %s: it was dropped after the outer UDP, before decapsulation",
			vni, in.Src, in.Dst, outer, ns, portText, vni)
	} else {
		f.cause = "no VXLAN device for the packet's VNI on " + portText
		f.meaning = fmt.Sprintf("an overlay packet (VXLAN, inner %s > %s)%s, but no VXLAN device in %s on %s has its VNI: it was dropped after the outer UDP, before decapsulation. The trace does not carry the VNI: `tcpdump -ni %s -vv udp port %d` shows it",
			in.Src, in.Dst, outer, ns, portText, f.site.Ifname, port)
	}
	f.fix = []string{
		inNetns(ns, "ip -d link show type vxlan   # this node's VNIs; the sender's VNI must be one of them (same VNI on both ends of the overlay)"),
	}
	if noReason(f.site.Reason) {
		// Before 5.17 vxlan_rcv frees an unknown VNI and an invalid header alike.
		f.meaning += " (the kernel gives no specific drop reason here: vxlan_rcv drops an unknown VNI and an invalid VXLAN header alike)"
		defer func() { f.sure = false }()
	}
	if d.facts == nil {
		return
	}
	vf, ok := d.facts.(vxlanFacts)
	if !ok {
		return
	}
	devs, err := vf.VXLANs(f.site.Netns)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "VXLAN devices in " + ns, Value: err.Error(), Source: "read failed"})
		return
	}
	var on, all []string
	var same []VXLANDevice
	for _, v := range devs {
		all = append(all, v.String())
		if port == 0 || v.Port == port {
			on = append(on, v.String())
			if vni != "" && v.VNI == hop.VNI {
				same = append(same, v)
			}
		}
	}
	what := fmt.Sprintf("VXLAN devices on port %d", port)
	if len(on) == 0 {
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: "none (all: " + orDefault(strings.Join(all, "; "), "none") + ")", Source: "netlink (ip -d link) in netns " + ns})
		return
	}
	f.evidence = append(f.evidence, trace.Evidence{What: what, Value: strings.Join(on, "; "), Source: "netlink (ip -d link) in netns " + ns})
	if len(same) > 0 {
		// A device for that VNI is there now: made since the drop, or it did not take the
		// packet for another reason (its underlay device, a local address it is bound to).
		f.meaning += fmt.Sprintf(". A device for VNI %s is on that port now (%s): made since the drop, or bound to another underlay device or address than the packet came in on", vni, same[0])
		f.fix = append(f.fix, inNetns(ns, "ip -d link show "+same[0].Name+"   # its dev and local address must take packets arriving on "+f.site.Ifname))
		return
	}
	sender := orDefault(addrOf(hop.Outer), "the outer source")
	if vni != "" {
		f.meaning += fmt.Sprintf(". The devices on that port here: %s; the sender uses VNI %s", strings.Join(on, "; "), vni)
		f.fix = append(f.fix, fmt.Sprintf("on the sender (%s): set its VXLAN device's id to the VNI used here, or add a device for VNI %s here: %s", sender, vni,
			inNetns(ns, fmt.Sprintf("ip link add vxlan%s type vxlan id %s dstport %d dev %s", vni, vni, port, f.site.Ifname))))
	} else {
		f.meaning += fmt.Sprintf(". The devices on that port here: %s; the sender uses another VNI", strings.Join(on, "; "))
		f.fix = append(f.fix, fmt.Sprintf("on the sender (%s): set its VXLAN device's id to the VNI used here, or add a device for its VNI here", sender))
	}
	f.sure = true
}
