package nodestate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Filter is a classic (non-BPF) tc filter on a device's clsact hook, in the words of
// `tc filter show dev <dev> <direction>`.
type Filter struct {
	Kind      string // "u32", "flower", "matchall", ...
	Pref      uint16
	Handle    string // "800::800" for u32, as tc prints it
	Protocol  string // "ip", "ipv6", "all", or the ethertype in hex
	Direction string
	Text      string // the whole filter as one tc-like line
	Drops     bool   // one of its actions drops (gact drop, or a control verdict of drop)
}

// TCFilters lists the filters on dev's tc hook in direction other than BPF ones (TCPrograms
// reads those), and the device's kind (veth, bridge, vxlan, tuntap, ...).
func (r *Reader) TCFilters(ino uint32, dev, direction string) (kind string, filters []Filter, err error) {
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if direction == Egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	err = r.withNetlink(ino, func(h *netlink.Handle) error {
		l, err := linkByName(h, dev)
		if err != nil {
			return err
		}
		kind = l.Type()
		fs, err := dump(func() ([]netlink.Filter, error) { return h.FilterList(l, parent) })
		if err != nil {
			return fmt.Errorf("tc filters %s: %w", direction, err)
		}
		for _, f := range fs {
			if _, ok := f.(*netlink.BpfFilter); ok {
				continue
			}
			filters = append(filters, describeFilter(h, f, direction))
		}
		return nil
	})
	if err != nil {
		return kind, nil, fmt.Errorf("read tc filters of %s in netns %d: %w", dev, ino, err)
	}
	return kind, filters, nil
}

func describeFilter(h *netlink.Handle, f netlink.Filter, dir string) Filter {
	a := f.Attrs()
	out := Filter{Kind: f.Type(), Pref: a.Priority, Protocol: ethProto(a.Protocol), Direction: dir}
	var b strings.Builder
	fmt.Fprintf(&b, "filter protocol %s pref %d %s", out.Protocol, a.Priority, out.Kind)
	if a.Chain != nil {
		fmt.Fprintf(&b, " chain %d", *a.Chain)
	}
	var acts []netlink.Action
	switch t := f.(type) {
	case *netlink.U32:
		out.Handle = u32Handle(a.Handle)
		fmt.Fprintf(&b, " fh %s", out.Handle)
		if t.Sel != nil {
			for _, k := range t.Sel.Keys {
				fmt.Fprintf(&b, " match %08x/%08x at %d", k.Val, k.Mask, k.Off)
				if m := ipMatch(a.Protocol, k); m != "" {
					b.WriteString(" (" + m + ")")
				}
			}
		}
		acts = t.Actions
	case *netlink.MatchAll:
		acts = t.Actions
	case *netlink.Flower:
		acts = t.Actions
	case *netlink.GenericFilter:
		out.Kind = t.FilterType
	}
	for _, act := range acts {
		txt, drops := describeAction(h, act)
		b.WriteString(" action " + txt)
		out.Drops = out.Drops || drops
	}
	out.Text = b.String()
	return out
}

// u32Handle prints a u32 handle as tc does: hash table, bucket and node, "800::800".
func u32Handle(h uint32) string {
	ht, bkt, node := h>>20, (h>>12)&0xff, h&0xfff
	s := fmt.Sprintf("%x:", ht)
	if bkt != 0 {
		s += fmt.Sprintf("%x", bkt)
	}
	s += ":"
	if node != 0 {
		s += fmt.Sprintf("%x", node)
	}
	return s
}

// ipMatch reads a u32 key on an IPv4 header's addresses as tc's `match ip src|dst` wrote it.
func ipMatch(proto uint16, k netlink.TcU32Key) string {
	if proto != unix.ETH_P_IP || (k.Off != 12 && k.Off != 16) {
		return ""
	}
	ones := 0
	for m := k.Mask; m&0x80000000 != 0; m <<= 1 {
		ones++
	}
	if k.Mask != 0 && uint32(0xffffffff<<(32-ones)) != k.Mask {
		return ""
	}
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], k.Val)
	dir := "src"
	if k.Off == 16 {
		dir = "dst"
	}
	return fmt.Sprintf("ip %s %s", dir, netip.PrefixFrom(netip.AddrFrom4(v), ones))
}

func describeAction(h *netlink.Handle, act netlink.Action) (string, bool) {
	ctl := act.Attrs().Action
	drops := ctl == netlink.TC_ACT_SHOT
	switch t := act.(type) {
	case *netlink.GenericAction:
		return "gact " + tcVerdict(ctl), drops
	case *netlink.MirredAction:
		dev := fmt.Sprintf("ifindex %d", t.Ifindex)
		if l, err := h.LinkByIndex(t.Ifindex); err == nil {
			dev = l.Attrs().Name
		} else {
			dev += " (gone)"
		}
		return fmt.Sprintf("mirred (%s to device %s) %s", mirredWords[t.MirredAction], dev, tcVerdict(ctl)), drops
	case *netlink.BpfAction:
		return "bpf " + t.Name + " " + tcVerdict(ctl), drops
	}
	return act.Type() + " " + tcVerdict(ctl), drops
}

// mirredWords are a mirred action's kinds as tc prints them.
var mirredWords = map[netlink.MirredAct]string{
	netlink.TCA_EGRESS_REDIR: "Egress Redirect", netlink.TCA_EGRESS_MIRROR: "Egress Mirror",
	netlink.TCA_INGRESS_REDIR: "Ingress Redirect", netlink.TCA_INGRESS_MIRROR: "Ingress Mirror",
}

// tcVerdict is a control verdict in tc's words.
func tcVerdict(a netlink.TcAct) string {
	switch a {
	case netlink.TC_ACT_SHOT:
		return "drop"
	case netlink.TC_ACT_OK:
		return "pass"
	case netlink.TC_ACT_PIPE:
		return "pipe"
	case netlink.TC_ACT_STOLEN:
		return "stolen"
	}
	return a.String()
}

func ethProto(p uint16) string {
	switch p {
	case unix.ETH_P_IP:
		return "ip"
	case unix.ETH_P_IPV6:
		return "ipv6"
	case unix.ETH_P_ALL:
		return "all"
	case unix.ETH_P_ARP:
		return "arp"
	}
	return fmt.Sprintf("0x%04x", p)
}

// VXLAN is a VXLAN device: its VNI, UDP port and underlay device.
type VXLAN struct {
	Name     string
	VNI      uint32
	Port     uint16
	Underlay string
	Up       bool
}

// VXLANs lists the VXLAN devices in the namespace with inode ino.
func (r *Reader) VXLANs(ino uint32) ([]VXLAN, error) {
	var out []VXLAN
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		links, err := dump(h.LinkList)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		for _, l := range links {
			v, ok := l.(*netlink.Vxlan)
			if !ok {
				continue
			}
			x := VXLAN{Name: v.Attrs().Name, VNI: uint32(v.VxlanId), Port: uint16(v.Port), Up: v.Attrs().Flags&unix.IFF_UP != 0}
			if u, err := h.LinkByIndex(v.VtepDevIndex); err == nil {
				x.Underlay = u.Attrs().Name
			}
			out = append(out, x)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read VXLAN devices in netns %d: %w", ino, err)
	}
	return out, nil
}
