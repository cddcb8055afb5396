package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Overlay is a two-node pod network wired the way flannel's vxlan backend
// does it:
//
//	pod1 (eth0 10.<net>.1.2/24, default via 10.<net>.1.1)
//	-- veth -- node1 (veth-pod 10.<net>.1.1/24, flannel.1 10.<net>.1.0/32,
//	              eth0 192.168.<net>.1/24, ip_forward=1)
//	== underlay veth ==
//	node2 (eth0 192.168.<net>.2/24, flannel.1 10.<net>.2.0/32,
//	       veth-pod 10.<net>.2.1/24, ip_forward=1)
//	-- veth -- pod2 (eth0 10.<net>.2.2/24, default via 10.<net>.2.1)
//
// Each node's flannel.1 is a VXLAN device (VNI 1, UDP port 8472, local =
// the node's underlay address, learning off, MTU 1450) with no remote of its
// own; like flanneld, each node instead gets, for the other node:
//
//	route  10.<net>.X.0/24 via 10.<net>.X.0 dev flannel.1 onlink
//	neigh  10.<net>.X.0 lladdr <remote flannel.1 MAC> dev flannel.1 permanent
//	fdb    <remote flannel.1 MAC> dst <remote underlay IP> dev flannel.1 self permanent
//
// So a packet from pod1 to pod2 is routed by node1 into flannel.1, which
// wraps it in UDP 192.168.<net>.1:<hash> -> 192.168.<net>.2:8472 on eth0;
// node2's flannel.1 decapsulates it and node2 forwards it to pod2. The
// flannel.1 MAC addresses are fixed (see VXLANMAC) so tests can match them.
// Pod veths have MTU 1450 as with flannel, so inner packets never need
// fragmenting on the underlay.
type Overlay struct {
	Lab                          *Lab
	Pod1, Node1, Node2, Pod2     *NS
	Pod1IP, Pod2IP               netip.Addr // 10.<net>.1.2, 10.<net>.2.2
	Node1PodIP, Node2PodIP       netip.Addr // pods' gateways: 10.<net>.1.1, 10.<net>.2.1
	Node1VTEPIP, Node2VTEPIP     netip.Addr // flannel.1 addresses: 10.<net>.1.0, 10.<net>.2.0
	Node1Underlay, Node2Underlay netip.Addr // 192.168.<net>.1, 192.168.<net>.2
	Node1VTEPMAC, Node2VTEPMAC   net.HardwareAddr
	VXLANDev                     string // "flannel.1" on both nodes
	VXLANPort                    uint16 // 8472
	VNI                          uint32 // 1
	Node1PodIf, Node2PodIf       string // "veth-pod": host side of each pod's veth
	UnderlayIf                   string // "eth0" on both nodes
}

// Names and numbers of the overlay topology.
const (
	OverlayVXLANDev   = "flannel.1"
	OverlayVXLANPort  = 8472 // flannel's (and Linux's legacy) VXLAN port, not IANA's 4789
	OverlayVNI        = 1
	OverlayMTU        = 1450 // 1500 minus 50 bytes of outer IPv4+UDP+VXLAN+Ethernet
	OverlayUnderlayIf = "eth0"
	OverlayPodIf      = "eth0"
	OverlayNodePodIf  = "veth-pod"
)

// VXLANMAC returns the fixed MAC address the overlay gives node's (1 or 2)
// flannel.1 in overlay number netNum: 0e:70:74:<netNum>:00:<node> (locally
// administered, unicast).
func VXLANMAC(netNum, node uint8) net.HardwareAddr {
	return net.HardwareAddr{0x0e, 0x70, 0x74, netNum, 0x00, node}
}

// NewOverlay builds the overlay topology in a new lab; net (1..254) picks the
// addresses. On error everything made so far is removed.
func NewOverlay(prefix string, net uint8) (*Overlay, error) {
	if net == 0 || net == 255 {
		return nil, fmt.Errorf("overlay topology %s: net %d out of range 1..254", prefix, net)
	}
	l, err := New(prefix)
	if err != nil {
		return nil, fmt.Errorf("overlay topology %s: %w", prefix, err)
	}
	o, err := buildOverlay(l, net)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("overlay topology %s: %w", prefix, err), l.Close())
	}
	return o, nil
}

func buildOverlay(l *Lab, n uint8) (*Overlay, error) {
	ip := func(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
	o := &Overlay{
		Lab:           l,
		Pod1IP:        ip(10, n, 1, 2),
		Pod2IP:        ip(10, n, 2, 2),
		Node1PodIP:    ip(10, n, 1, 1),
		Node2PodIP:    ip(10, n, 2, 1),
		Node1VTEPIP:   ip(10, n, 1, 0),
		Node2VTEPIP:   ip(10, n, 2, 0),
		Node1Underlay: ip(192, 168, n, 1),
		Node2Underlay: ip(192, 168, n, 2),
		Node1VTEPMAC:  VXLANMAC(n, 1),
		Node2VTEPMAC:  VXLANMAC(n, 2),
		VXLANDev:      OverlayVXLANDev,
		VXLANPort:     OverlayVXLANPort,
		VNI:           OverlayVNI,
		Node1PodIf:    OverlayNodePodIf,
		Node2PodIf:    OverlayNodePodIf,
		UnderlayIf:    OverlayUnderlayIf,
	}
	var err error
	for _, p := range []struct {
		ns   **NS
		name string
	}{{&o.Pod1, "pod1"}, {&o.Node1, "node1"}, {&o.Node2, "node2"}, {&o.Pod2, "pod2"}} {
		if *p.ns, err = l.AddNS(p.name); err != nil {
			return nil, err
		}
	}
	cidr := func(a netip.Addr, bits int) string { return netip.PrefixFrom(a, bits).String() }

	// Underlay first: the VXLAN devices are bound to it.
	if err := l.Veth(o.Node1, o.UnderlayIf, cidr(o.Node1Underlay, 24), o.Node2, o.UnderlayIf, cidr(o.Node2Underlay, 24)); err != nil {
		return nil, err
	}
	if err := l.Veth(o.Pod1, OverlayPodIf, cidr(o.Pod1IP, 24), o.Node1, o.Node1PodIf, cidr(o.Node1PodIP, 24)); err != nil {
		return nil, err
	}
	if err := l.Veth(o.Pod2, OverlayPodIf, cidr(o.Pod2IP, 24), o.Node2, o.Node2PodIf, cidr(o.Node2PodIP, 24)); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		ns  *NS
		dev string
	}{{o.Pod1, OverlayPodIf}, {o.Node1, o.Node1PodIf}, {o.Pod2, OverlayPodIf}, {o.Node2, o.Node2PodIf}} {
		if err := s.ns.setMTU(s.dev, OverlayMTU); err != nil {
			return nil, err
		}
	}

	type vtep struct {
		ns       *NS
		underlay netip.Addr
		addr     netip.Addr
		mac      net.HardwareAddr
	}
	v1 := vtep{o.Node1, o.Node1Underlay, o.Node1VTEPIP, o.Node1VTEPMAC}
	v2 := vtep{o.Node2, o.Node2Underlay, o.Node2VTEPIP, o.Node2VTEPMAC}
	for _, v := range []vtep{v1, v2} {
		if err := o.addVTEP(v.ns, v.underlay, v.addr, v.mac); err != nil {
			return nil, err
		}
	}
	// Each node learns the other the way flanneld's subnet watcher does.
	for _, p := range []struct {
		local, remote vtep
	}{{v1, v2}, {v2, v1}} {
		subnet := netip.PrefixFrom(p.remote.addr, 24)
		if err := o.addRemote(p.local.ns, subnet, p.remote.addr, p.remote.mac, p.remote.underlay); err != nil {
			return nil, err
		}
	}

	for _, nd := range []*NS{o.Node1, o.Node2} {
		if err := nd.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	if err := o.Pod1.AddRoute("default", o.Node1PodIP.String()); err != nil {
		return nil, err
	}
	if err := o.Pod2.AddRoute("default", o.Node2PodIP.String()); err != nil {
		return nil, err
	}
	for _, p := range []*NS{o.Pod1, o.Pod2} {
		if err := p.Sysctl("net.ipv4.icmp_echo_ignore_all", "0"); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (n *NS) setMTU(dev string, mtu int) error {
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		return h.LinkSetMTU(link, mtu)
	})
	if err != nil {
		return fmt.Errorf("set mtu %d on %s in %s: %w", mtu, dev, n.name, err)
	}
	return nil
}

// addVTEP makes flannel.1 in ns as flanneld would with
// `ip link add flannel.1 type vxlan id 1 local <underlay> dev eth0
// dstport 8472 nolearning`, then gives it its /32 address and brings it up.
func (o *Overlay) addVTEP(ns *NS, underlay, addr netip.Addr, mac net.HardwareAddr) error {
	err := ns.netlink(func(h *netlink.Handle) error {
		ul, err := h.LinkByName(o.UnderlayIf)
		if err != nil {
			return fmt.Errorf("find underlay %s: %w", o.UnderlayIf, err)
		}
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{
				Name:         o.VXLANDev,
				MTU:          OverlayMTU,
				HardwareAddr: mac,
			},
			VxlanId:      int(o.VNI),
			VtepDevIndex: ul.Attrs().Index,
			SrcAddr:      net.IP(underlay.AsSlice()),
			Port:         int(o.VXLANPort),
			Learning:     false,
		}
		if err := h.LinkAdd(vx); err != nil {
			return fmt.Errorf("create: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vxlan %s in %s: %w", o.VXLANDev, ns.name, err)
	}
	// configureLink adds the address, sets the link up and turns rp_filter
	// off; the device name has a dot, which it handles by using a '/' key.
	return ns.configureLink(o.VXLANDev, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(32, 32)}})
}

// addRemote installs in ns what flanneld installs for a remote node's lease.
func (o *Overlay) addRemote(ns *NS, subnet netip.Prefix, gw netip.Addr, mac net.HardwareAddr, underlay netip.Addr) error {
	err := ns.netlink(func(h *netlink.Handle) error {
		vx, err := h.LinkByName(o.VXLANDev)
		if err != nil {
			return fmt.Errorf("find %s: %w", o.VXLANDev, err)
		}
		idx := vx.Attrs().Index
		// ARP entry for the remote VTEP's address: the inner Ethernet
		// header's destination.
		if err := h.NeighSet(&netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_INET,
			State:        netlink.NUD_PERMANENT,
			Type:         unix.RTN_UNICAST,
			IP:           net.IP(gw.AsSlice()),
			HardwareAddr: mac,
		}); err != nil {
			return fmt.Errorf("neighbour %s: %w", gw, err)
		}
		// FDB entry: which underlay address that MAC lives behind.
		if err := h.NeighSet(&netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(underlay.AsSlice()),
			HardwareAddr: mac,
		}); err != nil {
			return fmt.Errorf("fdb %s -> %s: %w", mac, underlay, err)
		}
		s := subnet.Masked()
		if err := h.RouteAdd(&netlink.Route{
			LinkIndex: idx,
			Scope:     netlink.SCOPE_UNIVERSE,
			Dst:       &net.IPNet{IP: s.Addr().AsSlice(), Mask: net.CIDRMask(s.Bits(), 32)},
			Gw:        net.IP(gw.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
		}); err != nil {
			return fmt.Errorf("route %s via %s onlink: %w", s, gw, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("overlay remote %s in %s: %w", subnet, ns.name, err)
	}
	return nil
}

// Close removes the overlay's namespaces.
func (o *Overlay) Close() error { return o.Lab.Close() }
