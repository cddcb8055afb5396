package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Bridged is a node whose pods hang off a Linux bridge, as with the bridge
// CNI plugin (cni0):
//
//	pod<i> (eth0 10.<net>.0.<i+2>/24, default via 10.<net>.0.1)
//	-- veth -- node (vethpod<i> enslaved to cni0; cni0 10.<net>.0.1/24)
//
// The bridge has STP off (the kernel default), so ports forward as soon as
// they are up, and learns MAC addresses with the default ageing time of 300s
// until Flood is called. MAC addresses are fixed (see BridgedMAC) so tests
// can match them. Forwarding between pods is pure layer 2 and needs neither
// ip_forward nor br_netfilter; where br_netfilter is present (built in or
// loaded) its per-namespace bridge-nf-call-* sysctls are left at the kernel
// defaults, so bridged IPv4 also crosses the node's (empty) IPv4 netfilter
// hooks.
type Bridged struct {
	Lab       *Lab
	Node      *NS                // holds bridge "cni0" with address 10.<net>.0.1/24
	Pods      []*NS              // n pods, each eth0 10.<net>.0.<i+2>/24, default via 10.<net>.0.1
	PodIPs    []netip.Addr       // 10.<net>.0.<i+2>
	PodMACs   []net.HardwareAddr // BridgedMAC(net, i+2), on each pod's eth0
	PortIfs   []string           // host-side veths enslaved to cni0: "vethpod0", "vethpod1", ...
	Bridge    string             // "cni0"
	BridgeIP  netip.Addr         // 10.<net>.0.1, the pods' gateway
	BridgeMAC net.HardwareAddr   // BridgedMAC(net, 1)
}

// Names of the bridged topology.
const (
	BridgedBridge     = "cni0"
	BridgedPodIf      = "eth0"
	BridgedPortPrefix = "vethpod"
	// BridgedMaxPods is how many pods fit 10.<net>.0.2 .. 10.<net>.0.254.
	BridgedMaxPods = 253
)

// BridgedMAC returns the fixed MAC address the bridged topology gives the
// device whose IPv4 address is 10.<netNum>.0.<host>: 0e:70:62:<netNum>:00:<host>
// (locally administered, unicast). host 1 is cni0, host i+2 is pod i's eth0.
func BridgedMAC(netNum, host uint8) net.HardwareAddr {
	return net.HardwareAddr{0x0e, 0x70, 0x62, netNum, 0x00, host}
}

// NewBridged builds a node with a bridge cni0 and n pods attached to it in a
// new lab; net (1..254) picks the addresses and n is 1..BridgedMaxPods. On
// error everything made so far is removed.
func NewBridged(prefix string, net uint8, n int) (*Bridged, error) {
	if net == 0 || net == 255 {
		return nil, fmt.Errorf("bridged topology %s: net %d out of range 1..254", prefix, net)
	}
	if n < 1 || n > BridgedMaxPods {
		return nil, fmt.Errorf("bridged topology %s: %d pods, want 1..%d", prefix, n, BridgedMaxPods)
	}
	l, err := New(prefix)
	if err != nil {
		return nil, fmt.Errorf("bridged topology %s: %w", prefix, err)
	}
	b, err := buildBridged(l, net, n)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bridged topology %s: %w", prefix, err), l.Close())
	}
	return b, nil
}

func buildBridged(l *Lab, netNum uint8, n int) (*Bridged, error) {
	ip := func(host byte) netip.Addr { return netip.AddrFrom4([4]byte{10, netNum, 0, host}) }
	b := &Bridged{
		Lab:       l,
		Bridge:    BridgedBridge,
		BridgeIP:  ip(1),
		BridgeMAC: BridgedMAC(netNum, 1),
	}
	var err error
	if b.Node, err = l.AddNS("node"); err != nil {
		return nil, err
	}
	cidr := func(a netip.Addr) string { return netip.PrefixFrom(a, 24).String() }

	// What the bridge CNI plugin does on first use: create cni0, give it
	// the gateway address and bring it up. A fixed MAC also keeps the
	// bridge from taking on (and changing with) the lowest port MAC.
	err = b.Node.netlink(func(h *netlink.Handle) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = b.Bridge
		attrs.HardwareAddr = b.BridgeMAC
		return h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
	})
	if err != nil {
		return nil, fmt.Errorf("bridge %s in %s: create: %w", b.Bridge, b.Node.name, err)
	}
	gw, err := parseCIDR(cidr(b.BridgeIP))
	if err != nil {
		return nil, err
	}
	if err := b.Node.configureLink(b.Bridge, gw); err != nil {
		return nil, fmt.Errorf("bridge %w", err)
	}

	for i := range n {
		podIP := ip(byte(i + 2))
		mac := BridgedMAC(netNum, byte(i+2))
		port := BridgedPortPrefix + strconv.Itoa(i)
		pod, err := l.AddNS("pod" + strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		b.Pods = append(b.Pods, pod)
		b.PodIPs = append(b.PodIPs, podIP)
		b.PodMACs = append(b.PodMACs, mac)
		b.PortIfs = append(b.PortIfs, port)

		if err := l.Veth(pod, BridgedPodIf, cidr(podIP), b.Node, port, ""); err != nil {
			return nil, err
		}
		if err := pod.setMAC(BridgedPodIf, mac); err != nil {
			return nil, err
		}
		err = b.Node.netlink(func(h *netlink.Handle) error {
			br, err := h.LinkByName(b.Bridge)
			if err != nil {
				return err
			}
			p, err := h.LinkByName(port)
			if err != nil {
				return err
			}
			return h.LinkSetMaster(p, br)
		})
		if err != nil {
			return nil, fmt.Errorf("enslave %s to %s in %s: %w", port, b.Bridge, b.Node.name, err)
		}
		if err := pod.AddRoute("default", b.BridgeIP.String()); err != nil {
			return nil, err
		}
		if err := pod.Sysctl("net.ipv4.icmp_echo_ignore_all", "0"); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (n *NS) setMAC(dev string, mac net.HardwareAddr) error {
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		return h.LinkSetHardwareAddr(link, mac)
	})
	if err != nil {
		return fmt.Errorf("set mac %s on %s in %s: %w", mac, dev, n.name, err)
	}
	return nil
}

// Flood makes the bridge forget and stop learning MAC addresses, so that
// unicast frames are flooded to every port, as during an FDB miss: the
// ageing time becomes 0 (`ip link set cni0 type bridge ageing_time 0`; the
// kernel's br_fdb_update learns nothing while the hold time is 0) and the
// learned FDB entries are deleted (`bridge fdb flush dev cni0 dynamic`).
// Local and static entries stay.
//
// It also pre-populates ARP tables with permanent entries so that IP traffic
// on the bridge needs no ARP: each pod gets every other pod's and the
// gateway's (cni0's) MAC, and the node gets every pod's MAC on cni0.
func (b *Bridged) Flood() error {
	if err := b.flood(); err != nil {
		return fmt.Errorf("flood %s in %s: %w", b.Bridge, b.Node.name, err)
	}
	return nil
}

func (b *Bridged) flood() error {
	err := b.Node.netlink(func(h *netlink.Handle) error {
		br, err := h.LinkByName(b.Bridge)
		if err != nil {
			return err
		}
		// Only the name, index and ageing time are sent: NewLinkAttrs
		// leaves TxQLen at -1, which linkModify takes as "unchanged".
		attrs := netlink.NewLinkAttrs()
		attrs.Name = b.Bridge
		attrs.Index = br.Attrs().Index
		zero := uint32(0)
		if err := h.LinkModify(&netlink.Bridge{LinkAttrs: attrs, AgeingTime: &zero}); err != nil {
			// Some kernels (6.1) refuse the change with EBUSY: no learning on any port does
			// the same, as far as flooding goes.
			for _, port := range b.PortIfs {
				l, lerr := h.LinkByName(port)
				if lerr == nil {
					lerr = h.LinkSetLearning(l, false)
				}
				if lerr != nil {
					return fmt.Errorf("set ageing time 0: %w; turn learning off on %s: %w", err, port, lerr)
				}
			}
		}
		if err := flushLearnedFDB(h, br.Attrs().Index); err != nil {
			return err
		}
		for i, ip := range b.PodIPs {
			if err := setPermanentNeigh(h, br.Attrs().Index, ip, b.PodMACs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, pod := range b.Pods {
		err := pod.netlink(func(h *netlink.Handle) error {
			eth, err := h.LinkByName(BridgedPodIf)
			if err != nil {
				return err
			}
			idx := eth.Attrs().Index
			if err := setPermanentNeigh(h, idx, b.BridgeIP, b.BridgeMAC); err != nil {
				return err
			}
			for j, ip := range b.PodIPs {
				if j == i {
					continue
				}
				if err := setPermanentNeigh(h, idx, ip, b.PodMACs[j]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("arp entries in %s: %w", pod.name, err)
		}
	}
	return nil
}

// isLearnedFDB reports whether an AF_BRIDGE neighbour entry is a dynamic
// entry of the bridge with index brIdx. The bridge reports local entries
// (its own and its ports' MACs) as NUD_PERMANENT and static ones as
// NUD_NOARP; learned ones are NUD_REACHABLE or, once past the hold time,
// NUD_STALE. Entries reported by the ports themselves (NTF_SELF, such as
// their multicast addresses) carry no master index.
func isLearnedFDB(e netlink.Neigh, brIdx int) bool {
	return e.MasterIndex == brIdx && e.Flags&netlink.NTF_SELF == 0 &&
		e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0
}

// flushLearnedFDB deletes the bridge's dynamic FDB entries one by one, like
// `bridge fdb flush dev <br> dynamic` on kernels with bulk delete.
func flushLearnedFDB(h *netlink.Handle, brIdx int) error {
	fdb, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list fdb: %w", err)
	}
	for _, e := range fdb {
		if !isLearnedFDB(e, brIdx) {
			continue
		}
		err := h.NeighDel(&netlink.Neigh{
			LinkIndex:    e.LinkIndex,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_MASTER,
			HardwareAddr: e.HardwareAddr,
			Vlan:         e.Vlan,
		})
		// With a hold time of 0 the bridge's garbage collector removes
		// dynamic entries by itself, so it may have got there first.
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete fdb %s on ifindex %d: %w", e.HardwareAddr, e.LinkIndex, err)
		}
	}
	return nil
}

func setPermanentNeigh(h *netlink.Handle, linkIndex int, ip netip.Addr, mac net.HardwareAddr) error {
	err := h.NeighSet(&netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       unix.AF_INET,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           net.IP(ip.AsSlice()),
		HardwareAddr: mac,
	})
	if err != nil {
		return fmt.Errorf("neighbour %s lladdr %s: %w", ip, mac, err)
	}
	return nil
}

// Close removes the topology's namespaces.
func (b *Bridged) Close() error { return b.Lab.Close() }
