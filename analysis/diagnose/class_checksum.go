package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var checksumClass = register(Class{
	Name:       "checksum",
	Order:      50,
	Recognises: "`*_CSUM`",
	Reads:      "the device's checksum offloads; a VXLAN packet (by its header, or a VXLAN device's port) names the `--random-fully` + tx offload bug",
	Fix:        "`ethtool -K <vxlan dev> tx-checksum-ip-generic off` on the sender",
	Drop:       func(s *trace.DropSite, _ string) bool { return strings.HasSuffix(s.Reason, "_CSUM") },
	Explain:    (*Diagnoser).checksum,
})

// checksum explains a bad checksum: the receiving device's offloads, and the VXLAN bug of
// incident 001 when the packet is a VXLAN packet.
func (d *Diagnoser) checksum(f *finding) {
	dev := f.site.Ifname
	h := f.dropHop()
	f.cause = "bad checksum"
	var vxlanDev string
	if d.facts != nil {
		if o, err := d.facts.Offload(f.site.Netns, dev); err == nil {
			f.evidence = append(f.evidence, trace.Evidence{
				What:   "checksum offload on " + dev,
				Value:  fmt.Sprintf("tx %s, rx %s (%s)", onOff(o.TxChecksum), onOff(o.RxChecksum), o.Kind),
				Source: "ethtool ioctl in netns " + f.site.NetnsName,
			})
		}
		if devs, err := d.facts.VXLANDevices(f.site.Netns); err == nil {
			port := uint16(0)
			if h.Outer != nil {
				port = h.Outer.Dport
			} else if h.Tuple != nil {
				port = h.Tuple.Dport
			}
			for name, p := range devs {
				if p == port {
					vxlanDev = name
				}
			}
		}
	}
	if h.Encap == "vxlan" || vxlanDev != "" {
		if vxlanDev == "" {
			vxlanDev = "the VXLAN device"
		}
		outer := ""
		if h.Outer != nil {
			outer = fmt.Sprintf(" (outer %s:%d > %s:%d)", h.Outer.Src, h.Outer.Sport, h.Outer.Dst, h.Outer.Dport)
		}
		f.cause = "bad outer UDP checksum on VXLAN"
		f.meaning = "a VXLAN packet" + outer + " arrived with a bad UDP checksum and the receiving node dropped it before decapsulation. " +
			"Known cause: SNAT with --random-fully (or any source-port rewrite) on the sending node plus tx checksum offload on its VXLAN device"
		f.fix = []string{
			"on the sending node (" + orDefault(addrOf(h.Outer), "the outer source") + "): ethtool -K " + vxlanDev + " tx-checksum-ip-generic off",
			"or upgrade that node's kernel (fixed upstream)",
		}
		f.sure = h.Encap == "vxlan"
		return
	}
	f.fix = []string{inNetns(f.site.NetnsName, "ethtool -k "+dev+" | grep checksum   # and check the sender's offloads")}
}
