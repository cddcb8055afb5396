package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route types a lab can add, as `ip route add <type> ...` names them.
var routeTypeNames = map[string]int{
	"unreachable": unix.RTN_UNREACHABLE,
	"blackhole":   unix.RTN_BLACKHOLE,
	"prohibit":    unix.RTN_PROHIBIT,
	"throw":       unix.RTN_THROW,
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// AddTypedRoute adds a route with no next hop, as `ip route add <typ> <dst> table <table>`
// does: typ is unreachable, blackhole, prohibit or throw; table 0 is main.
func (n *NS) AddTypedRoute(typ, dst string, table int) error {
	t, ok := routeTypeNames[typ]
	if !ok {
		return fmt.Errorf("route %s %s in %s: unknown type", typ, dst, n.name)
	}
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		return fmt.Errorf("route %s %s in %s: %w", typ, dst, n.name, err)
	}
	r := &netlink.Route{Dst: ipNet(p), Type: t, Table: table}
	if p.Addr().Is6() {
		r.Family = unix.AF_INET6
	} else {
		r.Family = unix.AF_INET
	}
	if err := n.netlink(func(h *netlink.Handle) error { return h.RouteAdd(r) }); err != nil {
		return fmt.Errorf("route %s %s table %d in %s: %w", typ, dst, table, n.name, err)
	}
	return nil
}

// AddRouteVia adds dst via gw (dev may be "" to let the kernel find it) in table (0: main),
// as `ip route add <dst> via <gw> [dev <dev>] table <table>`.
func (n *NS) AddRouteVia(dst, gw, dev string, table int) error {
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, n.name, err)
	}
	g, err := netip.ParseAddr(gw)
	if err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, n.name, err)
	}
	r := &netlink.Route{Dst: ipNet(p), Gw: g.AsSlice(), Table: table}
	err = n.netlink(func(h *netlink.Handle) error {
		if dev != "" {
			l, err := h.LinkByName(dev)
			if err != nil {
				return err
			}
			r.LinkIndex = l.Attrs().Index
		}
		return h.RouteAdd(r)
	})
	if err != nil {
		return fmt.Errorf("route %s via %s dev %q table %d in %s: %w", dst, gw, dev, table, n.name, err)
	}
	return nil
}

// DelRoute removes the main table's route to dst, as `ip route del <dst>`.
func (n *NS) DelRoute(dst string) error {
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		return err
	}
	r := &netlink.Route{Dst: ipNet(p)}
	if err := n.netlink(func(h *netlink.Handle) error { return h.RouteDel(r) }); err != nil {
		return fmt.Errorf("route del %s in %s: %w", dst, n.name, err)
	}
	return nil
}

// AddRuleFrom adds a policy rule `ip rule add from <src> lookup <table> pref <pref>`.
func (n *NS) AddRuleFrom(src string, table, pref int) error {
	p, err := netip.ParsePrefix(src)
	if err != nil {
		return fmt.Errorf("rule from %s in %s: %w", src, n.name, err)
	}
	r := netlink.NewRule()
	r.Src = ipNet(p)
	r.Table = table
	r.Priority = pref
	r.Family = unix.AF_INET
	if p.Addr().Is6() {
		r.Family = unix.AF_INET6
	}
	if err := n.netlink(func(h *netlink.Handle) error { return h.RuleAdd(r) }); err != nil {
		return fmt.Errorf("rule from %s lookup %d pref %d in %s: %w", src, table, pref, n.name, err)
	}
	return nil
}

// SetMTU sets a device's MTU, as `ip link set dev <dev> mtu <mtu>`.
func (n *NS) SetMTU(dev string, mtu int) error { return n.setMTU(dev, mtu) }

// SendUDPDF sends one UDP datagram of size bytes of payload to dst:dport with the
// don't-fragment bit set (IPv4: IP_PMTUDISC_PROBE, so that the socket itself sends it whatever
// the path MTU it learnt; IPv6: IPV6_PMTUDISC_PROBE alike). The send's error (EMSGSIZE,
// ENETUNREACH...) is returned as is.
func (n *NS) SendUDPDF(dst string, dport uint16, size int) error {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return err
	}
	addr = addr.Unmap()
	network, local := "udp4", net.IPv4zero
	if addr.Is6() {
		network, local = "udp6", net.IPv6unspecified
	}
	err = n.Do(func() error {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: local})
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			if addr.Is6() {
				serr = syscall.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE)
				if serr == nil {
					serr = syscall.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1)
				}
			} else {
				serr = syscall.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
			}
		})
		if err := errors.Join(cerr, serr); err != nil {
			return err
		}
		_, err = c.WriteToUDPAddrPort(make([]byte, size), netip.AddrPortFrom(addr, dport))
		return err
	})
	if err != nil {
		return fmt.Errorf("udp %d bytes DF to %s:%d from %s: %w", size, dst, dport, n.name, err)
	}
	return nil
}
