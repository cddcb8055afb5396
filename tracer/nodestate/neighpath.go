package nodestate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pathtrace/pathtrace/tracer/netns"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NextHop is the route decision for a destination, as the kernel makes it now.
type NextHop struct {
	Route   string     // the matching route as `ip route` prints it
	Gateway netip.Addr // the gateway; invalid when the destination is on-link
	Addr    netip.Addr // the address to resolve: the gateway, or the destination on-link
	Dev     string
	Onlink  bool       // the route says onlink (its gateway is in no connected subnet)
	Src     netip.Addr // the source address the kernel picks for it (`ip route get`'s src)
}

// NextHop returns the route the namespace uses from src (may be invalid) to dst and the next
// hop it resolves.
func (r *Reader) NextHop(ino uint32, src, dst netip.Addr) (NextHop, error) {
	dst = dst.Unmap()
	var nh NextHop
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		opts := &netlink.RouteGetOptions{}
		if src.IsValid() {
			opts.SrcAddr = net.IP(src.Unmap().AsSlice())
		}
		routes, err := h.RouteGetWithOptions(net.IP(dst.AsSlice()), opts)
		if err != nil || len(routes) == 0 {
			if err == nil {
				err = errors.New("kernel returned no route")
			}
			return err
		}
		rt := routes[0]
		nh.Dev = ifname(h, rt.LinkIndex)
		nh.Addr = dst
		if a, ok := netip.AddrFromSlice(rt.Src); ok && rt.Src != nil {
			nh.Src = a.Unmap()
		}
		if g, ok := netip.AddrFromSlice(rt.Gw); ok && rt.Gw != nil {
			nh.Gateway, nh.Addr = g.Unmap(), g.Unmap()
		}
		opts.FIBMatch = true
		if fib, err := h.RouteGetWithOptions(net.IP(dst.AsSlice()), opts); err == nil && len(fib) > 0 {
			nh.Route = formatRoute(h, fib[0])
			nh.Onlink = fib[0].Flags&unix.RTNH_F_ONLINK != 0
			if nh.Onlink {
				nh.Route += " onlink"
			}
		}
		return nil
	})
	if err != nil {
		return nh, fmt.Errorf("read route to %s in netns %d: %w", dst, ino, err)
	}
	return nh, nil
}

// Link is a device's state and, for a veth, where its peer is.
type Link struct {
	Kind              string
	Up, LowerUp       bool // administratively up; carrier (its peer up, for a veth)
	Oper              string
	PeerNetns         uint32 // the veth peer's namespace (0: none or not found)
	PeerNetnsName     string // its name: a named namespace's, "host", or "netns:<inode>"
	PeerIfname        string
	PeerUp, PeerLower bool
}

// Link reads dev in the namespace and, when it is a veth, finds its peer among the node's
// namespaces.
func (r *Reader) Link(ino uint32, dev string) (Link, error) {
	var out Link
	var peerIndex, nsid int
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		l, err := linkByName(h, dev)
		if err != nil {
			return err
		}
		a := l.Attrs()
		out.Kind, out.Up, out.LowerUp, out.Oper = l.Type(), a.Flags&net.FlagUp != 0, a.RawFlags&unix.IFF_LOWER_UP != 0, a.OperState.String()
		peerIndex, nsid = a.ParentIndex, a.NetNsID
		if out.Kind != "veth" || peerIndex == 0 {
			return nil
		}
		if nsid < 0 {
			out.PeerNetns = ino
			return nil
		}
		for _, n := range r.ns.All() {
			f, err := netns.Open(n.Path)
			if err != nil {
				continue
			}
			id, err := h.GetNetNsIdByFd(f.Fd())
			f.Close()
			if err == nil && id == nsid {
				out.PeerNetns = n.Inode
				out.PeerNetnsName = r.name(n)
				return nil
			}
		}
		return nil
	})
	if err != nil || out.PeerNetns == 0 {
		return out, err
	}
	if out.PeerNetnsName == "" {
		out.PeerNetnsName = r.name(netns.Named{Inode: out.PeerNetns})
	}
	err = r.withNetlink(out.PeerNetns, func(h *netlink.Handle) error {
		p, err := h.LinkByIndex(peerIndex)
		if err != nil {
			return err
		}
		a := p.Attrs()
		out.PeerIfname, out.PeerUp, out.PeerLower = a.Name, a.Flags&net.FlagUp != 0, a.RawFlags&unix.IFF_LOWER_UP != 0
		return nil
	})
	return out, err
}

// name names a namespace the way the trace does.
func (r *Reader) name(n netns.Named) string {
	switch {
	case n.Inode == r.ns.HostInode():
		return "host"
	case n.Name != "":
		return n.Name
	}
	for _, m := range netns.List(netns.DefaultDirs...) {
		if m.Inode == n.Inode {
			return m.Name
		}
	}
	return fmt.Sprintf("netns:%d", n.Inode)
}

// Owner is a device that has an address configured.
type Owner struct {
	Netns     uint32
	NetnsName string
	Dev       string
}

// AddrOwners lists the devices of the node's namespaces that have addr configured.
func (r *Reader) AddrOwners(addr netip.Addr) []Owner {
	addr = addr.Unmap()
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	var out []Owner
	for _, n := range r.ns.All() {
		_ = withNetlinkAt(n.Path, func(h *netlink.Handle) error {
			addrs, err := h.AddrList(nil, family)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.WithZone("") {
					out = append(out, Owner{Netns: n.Inode, NetnsName: r.name(n), Dev: ifname(h, a.LinkIndex)})
				}
			}
			return nil
		})
	}
	return out
}

// withNetlinkAt runs fn with a netlink handle whose socket lives in the namespace at path,
// without entering it nor looking it up by inode: a walk over every namespace of the node
// would otherwise scan /proc once for each.
func withNetlinkAt(path string, fn func(h *netlink.Handle) error) error {
	f, err := netns.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(f.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}
