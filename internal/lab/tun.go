package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tunReadBuf is larger than any packet a tun without IFF_VNET_HDR can carry
// (no GSO, so at most the device MTU, which is at most 64 KiB).
const tunReadBuf = 65536

// TunUplink replaces nothing: it adds to n a tun device (IFF_TUN|IFF_NO_PI) named name with address cidr, up, and a
// route for dst via it; packets the kernel sends on it are read by a goroutine (the "far end") and handed to onPacket
// (raw IP bytes); the far end never answers. Close stops the reader and deletes the device.
//
// dst is an address or a CIDR ("10.<net>.99.0/24"); the route is a device
// route (scope link, no gateway), as a tun has no neighbours to resolve.
// onPacket runs on the reader goroutine, one packet at a time, and may keep
// the slice; it sees everything the kernel sends on the device, which may
// include IPv6 packets (router solicitations, MLD) besides the routed
// traffic. nil discards packets. Lab.Close closes the uplink too.
func (n *NS) TunUplink(name, cidr, dst string, onPacket func([]byte)) (io.Closer, error) {
	u, err := n.tunUplink(name, cidr, dst, onPacket)
	if err != nil {
		return nil, fmt.Errorf("tun uplink %s (%s, route %s) in %s: %w", name, cidr, dst, n.name, err)
	}
	if !n.lab.track(u) {
		return nil, fmt.Errorf("tun uplink %s in %s: lab is closed", name, n.name)
	}
	return u, nil
}

func (n *NS) tunUplink(name, cidr, dst string, onPacket func([]byte)) (*tunUplink, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ || strings.ContainsAny(name, "/ \t\n:%") {
		return nil, fmt.Errorf("invalid device name %q", name)
	}
	addr, err := parseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	if addr == nil {
		return nil, errors.New("an address is required")
	}
	route, err := parseAddrOrPrefix(dst)
	if err != nil {
		return nil, fmt.Errorf("route destination %q: %w", dst, err)
	}

	// A tun device is created in the network namespace of whoever opened
	// /dev/net/tun (the open records it), so both happen inside n.
	var f *os.File
	err = n.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		// Non-blocking, so os.File reads go through the poller and Close
		// interrupts a pending read.
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	u := &tunUplink{ns: n, name: name, f: f}
	if err := n.configureLink(name, addr); err != nil {
		// The device is not persistent: closing its only fd deletes it.
		f.Close()
		return nil, err
	}
	err = n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		p := route.Masked()
		return h.RouteAdd(&netlink.Route{
			LinkIndex: link.Attrs().Index,
			Scope:     netlink.SCOPE_LINK,
			Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		})
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("route %s dev %s: %w", dst, name, err)
	}
	u.wg.Go(func() { u.read(onPacket) })
	return u, nil
}

type tunUplink struct {
	ns   *NS
	name string
	f    *os.File
	wg   sync.WaitGroup

	once sync.Once
	err  error
}

func (u *tunUplink) read(onPacket func([]byte)) {
	buf := make([]byte, tunReadBuf)
	for {
		nr, err := u.f.Read(buf)
		if err != nil {
			// Close ends the loop with os.ErrClosed. Anything else
			// (EIO once the device is gone) ends it as well: a tun read
			// has no transient errors worth retrying.
			return
		}
		if onPacket != nil && nr > 0 {
			onPacket(append([]byte(nil), buf[:nr]...))
		}
	}
}

// Close stops the reader, waits for it (so onPacket is not called after
// Close returns) and makes sure the device is gone. Safe to call twice.
func (u *tunUplink) Close() error {
	u.once.Do(func() {
		cerr := u.f.Close()
		u.wg.Wait()
		// With its last fd closed the non-persistent device unregisters
		// itself; deleting is for the unexpected case that it did not.
		derr := u.ns.netlink(func(h *netlink.Handle) error {
			link, err := h.LinkByName(u.name)
			if err != nil {
				return nil
			}
			if _, ok := link.(*netlink.Tuntap); !ok {
				return nil
			}
			if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				return err
			}
			return nil
		})
		if err := errors.Join(cerr, derr); err != nil {
			u.err = fmt.Errorf("tun uplink %s in %s close: %w", u.name, u.ns.name, err)
		}
	})
	return u.err
}
