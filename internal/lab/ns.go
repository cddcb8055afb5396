package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is one network namespace of a lab.
type NS struct {
	lab   *Lab
	name  string
	inode uint32

	// mu guards fd against Lab.Close: users of fd hold it for reading only
	// while they need the descriptor itself (setns, opening netlink sockets).
	mu sync.RWMutex
	fd netns.NsHandle
}

// Name returns the full /run/netns name ("<prefix>-<name>").
func (n *NS) Name() string { return n.name }

// Path returns the namespace's bind mount, usable with setns(2) or
// `ip netns exec`.
func (n *NS) Path() string { return filepath.Join(netnsRunDir, n.name) }

// Inode returns the namespace's inode number, as in /proc/self/ns/net ->
// net:[N]; BPF programs see the same number in net->ns.inum.
func (n *NS) Inode() uint32 { return n.inode }

// Delete removes the namespace now, as `ip netns del` does: its name goes, and once nothing
// else holds it (a socket, a process, another program's descriptor) the kernel destroys it
// with its devices. Lab.Close then has nothing left to do for it.
func (n *NS) Delete() error {
	n.mu.Lock()
	if n.fd >= 0 {
		n.fd.Close()
		n.fd = -1
	}
	n.mu.Unlock()
	return removeOwned(n.name, n.inode)
}

// Lab returns the lab the namespace belongs to.
func (n *NS) Lab() *Lab { return n.lab }

// withFd runs fn with the namespace's descriptor while holding it open.
func (n *NS) withFd(fn func(fd netns.NsHandle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.fd < 0 {
		return fmt.Errorf("netns %s: lab is closed", n.name)
	}
	return fn(n.fd)
}

// Do runs fn on a locked OS thread inside the namespace and moves the thread
// back afterwards. fn runs on a different goroutine than the caller, so it must
// not call t.Fatal and friends. Sockets created by fn stay in the namespace
// after Do returns; goroutines started by fn do not.
func (n *NS) Do(fn func() error) error {
	return onLockedThread(func() error {
		err := n.withFd(func(fd netns.NsHandle) error {
			if err := netns.Set(fd); err != nil {
				return fmt.Errorf("netns %s: setns: %w", n.name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return fn()
	})
}

// dupFd returns a descriptor of the namespace that the caller must close.
func (n *NS) dupFd() (int, error) {
	var fd int
	err := n.withFd(func(h netns.NsHandle) error {
		var err error
		fd, err = unix.FcntlInt(uintptr(h), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("netns %s: %w", n.name, err)
	}
	return fd, nil
}

// netlink runs fn with a netlink handle whose sockets live in the namespace,
// which avoids moving any thread for link/address/route work. The handle speaks
// rtnetlink alone: by default it would also open XFRM and NETFILTER sockets,
// which a kernel without nfnetlink refuses.
func (n *NS) netlink(fn func(h *netlink.Handle) error) error {
	var h *netlink.Handle
	err := n.withFd(func(fd netns.NsHandle) error {
		var err error
		h, err = netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", n.name, err)
	}
	defer h.Close()
	return fn(h)
}

// AddRoute adds a route in the namespace: dst is "default" or a CIDR, via a
// gateway address on a connected subnet.
func (n *NS) AddRoute(dst, via string) error {
	gw, err := netip.ParseAddr(via)
	if err != nil {
		return fmt.Errorf("route %s via %s in %s: bad gateway: %w", dst, via, n.name, err)
	}
	gw = gw.Unmap()
	r := &netlink.Route{Gw: net.IP(gw.AsSlice())}
	if dst != "default" {
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			return fmt.Errorf("route %s via %s in %s: bad destination: %w", dst, via, n.name, err)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		if p.Addr().Is4() != gw.Is4() {
			return fmt.Errorf("route %s via %s in %s: address families differ", dst, via, n.name)
		}
		r.Dst = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	err = n.netlink(func(h *netlink.Handle) error { return h.RouteAdd(r) })
	if err != nil {
		return fmt.Errorf("route %s via %s in %s: %w", dst, via, n.name, err)
	}
	return nil
}

// sysctlPath maps "net.ipv4.ip_forward" to /proc/sys/net/ipv4/ip_forward.
// Like sysctl(8), a key written with '/' separators is taken as a path, which
// is the only way to name a device whose name contains a dot. Only net.* is
// allowed because everything else under /proc/sys is global: writing it
// "inside" a lab namespace would silently change the host.
func sysctlPath(key string) (string, error) {
	rel := key
	if !strings.Contains(key, "/") {
		rel = strings.ReplaceAll(key, ".", "/")
	}
	rel = strings.Trim(rel, "/")
	clean := filepath.Clean(rel)
	if clean != rel || !strings.HasPrefix(clean, "net/") {
		return "", fmt.Errorf("sysctl %q: only net.* keys are per namespace", key)
	}
	return filepath.Join("/proc/sys", clean), nil
}

// Sysctl writes a net.* sysctl inside the namespace. /proc/sys/net resolves
// against the network namespace of the opening thread, which is why the open
// happens inside Do.
func (n *NS) Sysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	err = n.Do(func() error {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value)
		cerr := f.Close()
		return errors.Join(werr, cerr)
	})
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.name, err)
	}
	return nil
}

// ReadSysctl reads a net.* sysctl inside the namespace, without the trailing
// newline.
func (n *NS) ReadSysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = n.Do(func() error {
		var err error
		b, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("sysctl %s in %s: %w", key, n.name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Veth joins two namespaces: device aName in a with address aCIDR
// ("10.0.1.2/24"), bName in b with bCIDR; both up. An empty CIDR means no
// address. Both ends get rp_filter=0 so routing asymmetry in a lab never
// silently drops packets.
func (l *Lab) Veth(a *NS, aName, aCIDR string, b *NS, bName, bCIDR string) error {
	if err := l.veth(a, aName, aCIDR, b, bName, bCIDR); err != nil {
		return fmt.Errorf("veth %s-%s: %w", aName, bName, err)
	}
	return nil
}

func (l *Lab) veth(a *NS, aName, aCIDR string, b *NS, bName, bCIDR string) error {
	if a == nil || b == nil {
		return errors.New("nil namespace")
	}
	if a.lab != l || b.lab != l {
		return errors.New("namespace belongs to another lab")
	}
	for _, name := range []string{aName, bName} {
		if name == "" || len(name) >= unix.IFNAMSIZ || strings.ContainsAny(name, "/ \t\n:") {
			return fmt.Errorf("invalid device name %q", name)
		}
	}
	if a == b && aName == bName {
		return errors.New("both ends have the same name in the same namespace")
	}
	aAddr, err := parseCIDR(aCIDR)
	if err != nil {
		return err
	}
	bAddr, err := parseCIDR(bCIDR)
	if err != nil {
		return err
	}

	// A duplicate of b's descriptor avoids holding b's lock while taking a's
	// (they may be the same namespace, and RWMutex read locks do not nest).
	bfd, err := b.dupFd()
	if err != nil {
		return err
	}
	defer unix.Close(bfd)
	// Creating the pair from inside a with the peer placed straight into b
	// means no device ever appears in the caller's namespace, where its name
	// could clash with a real interface.
	err = a.netlink(func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: aName},
			PeerName:      bName,
			PeerNamespace: netlink.NsFd(bfd),
		})
	})
	if err != nil {
		return fmt.Errorf("create in %s/%s: %w", a.name, b.name, err)
	}

	if err := b.configureLink(bName, bAddr); err != nil {
		a.deleteLink(aName)
		return err
	}
	if err := a.configureLink(aName, aAddr); err != nil {
		a.deleteLink(aName)
		return err
	}
	return nil
}

func parseCIDR(cidr string) (*netlink.Addr, error) {
	if cidr == "" {
		return nil, nil
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", cidr, err)
	}
	if addr.IP.To4() == nil {
		// NODAD makes the address usable at once whatever accept_dad says;
		// otherwise it stays tentative for about a second after link up.
		addr.Flags |= unix.IFA_F_NODAD
	}
	return addr, nil
}

func (n *NS) configureLink(name string, addr *netlink.Addr) error {
	err := n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find: %w", err)
		}
		if addr != nil {
			if err := h.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("add address %s: %w", addr.IPNet, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s in %s: %w", name, n.name, err)
	}
	// Per-device rp_filter is combined with "all" by taking the maximum, so
	// both must be 0; "default" already covers new devices, this covers a
	// caller that changed default in between.
	if err := n.Sysctl("net/ipv4/conf/"+name+"/rp_filter", "0"); err != nil {
		return fmt.Errorf("%s in %s: %w", name, n.name, err)
	}
	return nil
}

// deleteLink is best effort cleanup after a failed Veth; deleting one end of a
// veth deletes the peer too.
func (n *NS) deleteLink(name string) {
	_ = n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		return h.LinkDel(link)
	})
}

// AddAddr adds an address (CIDR) to a device of the namespace; an IPv6 one is usable at once
// (no duplicate address detection).
func (n *NS) AddAddr(dev, cidr string) error {
	addr, err := parseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", cidr, dev, n.name, err)
	}
	return n.netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("address %s on %s in %s: %w", cidr, dev, n.name, err)
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("address %s on %s in %s: %w", cidr, dev, n.name, err)
		}
		return nil
	})
}

// Run runs a command (ip, nft, iptables...) inside the namespace and returns its error with
// its output, so that a lab can be broken with the tools a person would use.
func (n *NS) Run(name string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
