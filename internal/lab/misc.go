package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgePort makes bridge br in n (as `ip link add br type bridge`), enslaves port to it and
// moves port's IPv4 addresses to the bridge, as a node whose pods sit behind a bridge (cni0,
// docker0) is built.
func (n *NS) BridgePort(br, port string) error {
	err := n.netlink(func(h *netlink.Handle) error {
		p, err := h.LinkByName(port)
		if err != nil {
			return fmt.Errorf("find %s: %w", port, err)
		}
		addrs, err := h.AddrList(p, unix.AF_INET)
		if err != nil {
			return err
		}
		b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}}
		if err := h.LinkAdd(b); err != nil {
			return fmt.Errorf("create %s: %w", br, err)
		}
		bl, err := h.LinkByName(br)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := h.AddrDel(p, &a); err != nil {
				return err
			}
			na := &netlink.Addr{IPNet: a.IPNet}
			if err := h.AddrAdd(bl, na); err != nil {
				return err
			}
		}
		if err := h.LinkSetMaster(p, bl); err != nil {
			return err
		}
		return h.LinkSetUp(bl)
	})
	if err != nil {
		return fmt.Errorf("bridge %s with port %s in %s: %w", br, port, n.name, err)
	}
	return nil
}

// TCU32Drop adds, as `tc qdisc add dev <dev> clsact; tc filter add dev <dev> <direction>
// protocol ip pref 10 u32 match ip src <src>/32 action drop` would, a u32 filter with a gact
// drop action: no BPF involved. A kernel without act_gact (CONFIG_NET_ACT_GACT) gets `action
// mirred egress mirror dev lo drop` instead: a mirred action whose control verdict is drop.
func (n *NS) TCU32Drop(dev, direction string, src netip.Addr) error {
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if direction == TCEgress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	a := src.Unmap().As4()
	err := n.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
		if err := h.QdiscAdd(q); err != nil && err != unix.EEXIST {
			return fmt.Errorf("clsact: %w", err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		filter := func(act netlink.Action) *netlink.U32 {
			return &netlink.U32{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: parent, Priority: 10, Protocol: unix.ETH_P_IP},
				Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1, Keys: []netlink.TcU32Key{{
					Mask: 0xffffffff, Val: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]), Off: 12,
				}}},
				Actions: []netlink.Action{act},
			}
		}
		err = h.FilterAdd(filter(&netlink.GenericAction{ActionAttrs: netlink.ActionAttrs{Action: netlink.TC_ACT_SHOT}}))
		if errors.Is(err, unix.ENOENT) {
			m := netlink.NewMirredAction(lo.Attrs().Index)
			m.MirredAction = netlink.TCA_EGRESS_MIRROR
			m.Attrs().Action = netlink.TC_ACT_SHOT
			err = h.FilterAdd(filter(m))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("tc u32 drop %s on %s %s in %s: %w", src, dev, direction, n.name, err)
	}
	return nil
}

// VXLANDevice makes a VXLAN device in n as `ip link add <name> type vxlan id <vni> dstport
// <port> dev <underlay> nolearning` and brings it up with addr (a CIDR, or "" for none).
func (n *NS) VXLANDevice(name string, vni uint32, port uint16, underlay, addr string) error {
	err := n.netlink(func(h *netlink.Handle) error {
		ul, err := h.LinkByName(underlay)
		if err != nil {
			return err
		}
		return h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name}, VxlanId: int(vni), VtepDevIndex: ul.Attrs().Index, Port: int(port)})
	})
	if err != nil {
		return fmt.Errorf("vxlan %s in %s: %w", name, n.name, err)
	}
	var a *netlink.Addr
	if addr != "" {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return err
		}
		a = &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	}
	return n.configureLink(name, a)
}

// StaticNeigh gives n a permanent neighbour entry on dev for ip with the MAC address of
// peer's peerDev (`ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent`): the scenario
// then tests the IP path alone, not also the ARP exchange the same fault would break.
func (n *NS) StaticNeigh(dev string, ip netip.Addr, peer *NS, peerDev string) error {
	var mac net.HardwareAddr
	err := peer.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(peerDev)
		if err != nil {
			return err
		}
		mac = l.Attrs().HardwareAddr
		return nil
	})
	if err == nil {
		err = n.netlink(func(h *netlink.Handle) error {
			l, err := h.LinkByName(dev)
			if err != nil {
				return err
			}
			return setPermanentNeigh(h, l.Attrs().Index, ip, mac)
		})
	}
	if err != nil {
		return fmt.Errorf("static neighbour %s on %s in %s: %w", ip, dev, n.name, err)
	}
	return nil
}

// PermanentNeigh adds `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent` in n.
func (n *NS) PermanentNeigh(dev string, ip netip.Addr, mac net.HardwareAddr) error {
	err := n.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return err
		}
		return setPermanentNeigh(h, l.Attrs().Index, ip, mac)
	})
	if err != nil {
		return fmt.Errorf("permanent neighbour %s on %s in %s: %w", ip, dev, n.name, err)
	}
	return nil
}

// ListenBacklog opens a TCP listener on port in n (all addresses, IPv4) with the given listen()
// backlog and never accepts: its accept queue fills, as a stuck server's does. With
// TCP_DEFER_ACCEPT (deferSecs > 0) a connection joins the accept queue only when its first
// data comes, so that a test decides which handshakes complete, and when. The lab closes it.
func (n *NS) ListenBacklog(port uint16, backlog, deferSecs int) error {
	var fd int
	err := n.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if deferSecs > 0 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSecs); err != nil {
				unix.Close(fd)
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)}); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listen tcp :%d (backlog %d) in %s: %w", port, backlog, n.name, err)
	}
	if !n.lab.track(fdCloser(fd)) {
		unix.Close(fd)
		return fmt.Errorf("listen tcp :%d in %s: lab is closed", port, n.name)
	}
	return nil
}

type fdCloser int

func (f fdCloser) Close() error { return unix.Close(int(f)) }
