package lab

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ReplaceRoute sets the route to dst ("default" or a CIDR) to go via gw on dev, replacing the
// route to the same destination; onlink says the gateway need not be in a connected subnet
// (Calico's `default via 169.254.1.1 dev eth0 onlink`).
func (n *NS) ReplaceRoute(dst, gw, dev string, onlink bool) error {
	g, err := netip.ParseAddr(gw)
	if err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, gw, n.name, err)
	}
	return n.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("route %s via %s dev %s in %s: %w", dst, gw, dev, n.name, err)
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(g.AsSlice())}
		if onlink {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if dst != "default" {
			p, err := netip.ParsePrefix(dst)
			if err != nil {
				return fmt.Errorf("route %s in %s: %w", dst, n.name, err)
			}
			r.Dst = &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		} else if g.Is6() {
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s via %s dev %s in %s: %w", dst, gw, dev, n.name, err)
		}
		return nil
	})
}

// SetLinkDown takes a device of the namespace down.
func (n *NS) SetLinkDown(dev string) error {
	return n.netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("link %s down in %s: %w", dev, n.name, err)
		}
		if err := h.LinkSetDown(l); err != nil {
			return fmt.Errorf("link %s down in %s: %w", dev, n.name, err)
		}
		return nil
	})
}

// WaitCarrier waits up to timeout for dev's carrier (IFF_LOWER_UP) to be want: the kernel
// tells a veth end that its peer went down asynchronously (linkwatch, up to a second later),
// and flushes the end's neighbours then.
func (n *NS) WaitCarrier(dev string, want bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var lower bool
		err := n.netlink(func(h *netlink.Handle) error {
			l, err := h.LinkByName(dev)
			if err != nil {
				return err
			}
			lower = l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
			return nil
		})
		if err != nil {
			return fmt.Errorf("carrier of %s in %s: %w", dev, n.name, err)
		}
		if lower == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("carrier of %s in %s still %v after %v", dev, n.name, lower, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
