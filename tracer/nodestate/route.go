package nodestate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeTypes names the route types other than unicast, as `ip route` prints them.
var routeTypes = map[int]string{
	unix.RTN_LOCAL:       "local",
	unix.RTN_BROADCAST:   "broadcast",
	unix.RTN_ANYCAST:     "anycast",
	unix.RTN_MULTICAST:   "multicast",
	unix.RTN_BLACKHOLE:   "blackhole",
	unix.RTN_UNREACHABLE: "unreachable",
	unix.RTN_PROHIBIT:    "prohibit",
	unix.RTN_THROW:       "throw",
	unix.RTN_NAT:         "nat",
}

// lookupErrors explain the errors a route lookup returns: the kernel reports a blackhole,
// prohibit or unreachable route only as an errno, and EINVAL for a blackhole reads as if the
// request were wrong.
var lookupErrors = map[unix.Errno]string{
	unix.ENETUNREACH:  "no route",
	unix.EHOSTUNREACH: "unreachable route",
	unix.EACCES:       "prohibit route",
	unix.EINVAL:       "blackhole route or bad request",
}

// RouteTo returns the route the namespace with inode ino uses for packets it sends to dst, as
// `ip route` would print it: "10.0.2.0/24 via 10.0.1.1 dev eth0". It is an output lookup (no
// input device), so policy rules that match on iif are not taken into account. A lookup that
// finds no usable route is an error wrapping the kernel's errno (unix.ENETUNREACH...).
func (r *Reader) RouteTo(ino uint32, dst netip.Addr) (string, error) {
	dst = dst.Unmap()
	var text string
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		ip := net.IP(dst.AsSlice())
		// FIBMatch returns the table entry that matched (its prefix) rather than a host
		// route to dst, which is what a person compares with `ip route` output.
		routes, err := h.RouteGetWithOptions(ip, &netlink.RouteGetOptions{FIBMatch: true})
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) && lookupErrors[errno] != "" {
				return fmt.Errorf("%s: %w", lookupErrors[errno], err)
			}
			return err
		}
		if len(routes) == 0 {
			return errors.New("kernel returned no route")
		}
		text = formatRoute(h, routes[0])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read route to %s in netns %d: %w", dst, ino, err)
	}
	return text, nil
}

func formatRoute(h *netlink.Handle, rt netlink.Route) string {
	var b strings.Builder
	if t, ok := routeTypes[rt.Type]; ok {
		b.WriteString(t + " ")
	}
	// Like `ip route`: "default" for /0, a bare address for a host route.
	switch ones, bits := maskSize(rt.Dst); {
	case rt.Dst == nil || ones == 0:
		b.WriteString("default")
	case ones == bits:
		b.WriteString(rt.Dst.IP.String())
	default:
		b.WriteString(rt.Dst.String())
	}
	writeNexthop(&b, h, rt.Gw, rt.Via, rt.LinkIndex)
	for _, nh := range rt.MultiPath {
		b.WriteString(" nexthop")
		writeNexthop(&b, h, nh.Gw, nh.Via, nh.LinkIndex)
	}
	// Until the first policy rule is added the kernel keeps local routes in the main table
	// and reports them as such, so "table local" shows up only on nodes with custom rules.
	switch rt.Table {
	case 0, unix.RT_TABLE_MAIN:
	case unix.RT_TABLE_LOCAL:
		b.WriteString(" table local")
	default:
		fmt.Fprintf(&b, " table %d", rt.Table)
	}
	if rt.Src != nil {
		b.WriteString(" src " + rt.Src.String())
	}
	return b.String()
}

func maskSize(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Mask.Size()
}

func writeNexthop(b *strings.Builder, h *netlink.Handle, gw net.IP, via netlink.Destination, ifindex int) {
	if gw != nil {
		b.WriteString(" via " + gw.String())
	} else if v, ok := via.(*netlink.Via); ok && v != nil {
		// An IPv4 route through an IPv6 gateway (RFC 5549), as `ip route` prints it.
		fam := "inet"
		if v.AddrFamily == unix.AF_INET6 {
			fam = "inet6"
		}
		b.WriteString(" via " + fam + " " + v.Addr.String())
	}
	if ifindex > 0 {
		b.WriteString(" dev " + ifname(h, ifindex))
	}
}

// ifname names a device of the handle's namespace, or gives its index if it vanished.
func ifname(h *netlink.Handle, ifindex int) string {
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Sprintf("if%d", ifindex)
	}
	return l.Attrs().Name
}
