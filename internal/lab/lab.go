// Package lab builds small network topologies out of real Linux network
// namespaces, veth pairs, routes, sysctls and nftables rules, entirely through
// syscalls and netlink. It exists for pathtrace's end-to-end tests and the
// `pathtrace demo` command, which must also run inside a minimal VM initramfs
// that has nothing but a static Go binary, so nothing here may exec ip, nft,
// sysctl or ping.
//
// All namespaces are registered under /run/netns the way `ip netns add` does,
// so that `ip netns exec <prefix>-<name> ...` can be used to poke at a lab
// while debugging.
//
// Requirements: root (CAP_SYS_ADMIN and CAP_NET_ADMIN), /proc mounted (thread
// namespaces and /proc/sys/net are reached through it) and a writable /run.
package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsRunDir is where iproute2 (and vishvananda/netns) expect named
// namespaces; using the same place is what makes the lab visible to other tools.
const netnsRunDir = "/run/netns"

// Lab is a set of network namespaces made for one test or demo; Close removes
// everything.
type Lab struct {
	prefix string

	mu      sync.Mutex
	closed  bool
	nss     []*NS
	closers []io.Closer
}

// New makes an empty lab. prefix names its namespaces ("<prefix>-<name>").
// Stale namespaces with the same prefix from a crashed earlier run are removed
// first, so two live labs in the same machine must use different prefixes.
// Because namespace names may not contain '-', a lab "a" never removes the
// namespaces of a lab "a-b".
func New(prefix string) (*Lab, error) {
	if prefix == "" || strings.ContainsAny(prefix, "/\x00") || prefix == "." || prefix == ".." {
		return nil, fmt.Errorf("lab %q: invalid prefix", prefix)
	}
	if err := prepareRunDir(); err != nil {
		return nil, fmt.Errorf("lab %s: %w", prefix, err)
	}
	if err := removeStale(prefix); err != nil {
		return nil, fmt.Errorf("lab %s: remove stale namespaces: %w", prefix, err)
	}
	return &Lab{prefix: prefix}, nil
}

// prepareRunDir mirrors what iproute2 does before its first `ip netns add`:
// /run/netns becomes a shared mount point so the bind mounts made below
// propagate to (and can be unmounted from) other mount namespaces. Failure to
// make it shared is not fatal: in a single mount namespace (the initramfs) the
// bind mounts work either way.
func prepareRunDir() error {
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsRunDir, err)
	}
	err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// EINVAL means it is not a mount point yet.
		if unix.Mount(netnsRunDir, netnsRunDir, "none", unix.MS_BIND|unix.MS_REC, "") == nil {
			_ = unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	return nil
}

// isLabEntry reports whether a /run/netns entry belongs to a lab with this
// prefix. Namespace names cannot contain '-', which keeps "<a>-<name>" from
// matching a lab whose prefix merely starts with "<a>-".
func isLabEntry(prefix, entry string) bool {
	rest, ok := strings.CutPrefix(entry, prefix+"-")
	return ok && rest != "" && !strings.Contains(rest, "-")
}

func removeStale(prefix string) error {
	entries, err := os.ReadDir(netnsRunDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if isLabEntry(prefix, e.Name()) {
			if err := removeNamed(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeNamed is netns.DeleteNamed made tolerant: a crash between creating the
// placeholder file and bind-mounting onto it leaves a plain file, which
// DeleteNamed would refuse to remove because the unmount fails.
func removeNamed(name string) error {
	p := filepath.Join(netnsRunDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// removeOwned removes the entry only while it still is the namespace this lab
// made: a later New with the same prefix may have replaced it, and closing a
// stale Lab object must not delete the newer lab's namespace.
func removeOwned(name string, inode uint32) error {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsRunDir, name), &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat: %w", err)
	}
	if st.Ino != uint64(inode) {
		return nil
	}
	return removeNamed(name)
}

// validName keeps names usable as a single path element and keeps '-' free as
// the prefix separator (see isLabEntry).
func validName(name string) bool {
	if name == "" || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "-/\x00 \t\n")
}

// AddNS makes a new named network namespace "<prefix>-<name>" with lo up.
func (l *Lab) AddNS(name string) (*NS, error) {
	if !validName(name) {
		return nil, fmt.Errorf("netns %q: invalid name (no '-', '/' or spaces)", name)
	}
	full := l.prefix + "-" + name

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("netns %s: lab is closed", full)
	}
	for _, n := range l.nss {
		if n.name == full {
			return nil, fmt.Errorf("netns %s: already exists in this lab", full)
		}
	}

	var h netns.NsHandle = -1
	err := onLockedThread(func() error {
		// NewNamed unshares the calling thread into the new namespace;
		// onLockedThread moves the thread back afterwards.
		var err error
		h, err = netns.NewNamed(full)
		return err
	})
	if err != nil {
		if h >= 0 {
			h.Close()
		}
		// NewNamed can fail after creating the placeholder file; remove it
		// unless the failure was that the name belonged to someone else.
		if !errors.Is(err, os.ErrExist) {
			_ = removeNamed(full)
		}
		return nil, fmt.Errorf("netns %s: create: %w", full, err)
	}

	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		_ = removeNamed(full)
		return nil, fmt.Errorf("netns %s: stat: %w", full, err)
	}
	n := &NS{lab: l, name: full, fd: h, inode: uint32(st.Ino)}
	// Registered before further setup so that Close cleans up even if the
	// rest of AddNS fails and the caller ignores the half-made namespace.
	l.nss = append(l.nss, n)

	if err := n.setupNew(); err != nil {
		return nil, fmt.Errorf("netns %s: %w", full, err)
	}
	return n, nil
}

func (n *NS) setupNew() error {
	err := n.netlink(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// New namespaces copy net.ipv4.conf.{all,default} from the initial
	// namespace, so a host with rp_filter=1 (many distros) would make
	// forwarding labs depend on the host. Setting default before any veth
	// exists means every lab device starts with rp_filter=0 too.
	for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		if err := n.Sysctl(k, "0"); err != nil {
			return err
		}
	}
	// Duplicate address detection would leave v6 addresses "tentative" (and
	// unusable) for about a second; lab addresses are unique by construction.
	// Best effort: IPv6 may be disabled.
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		_ = n.Sysctl(k, "0")
	}
	return nil
}

// Close deletes every namespace the lab made, which also deletes their links
// once nothing holds the namespaces any more. It also closes the sockets and
// listeners handed out by the lab's namespaces, because an open socket would
// otherwise keep its namespace alive. Safe to call twice.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nss := l.nss
	closers := l.closers
	l.nss, l.closers = nil, nil
	l.mu.Unlock()

	for i := len(closers) - 1; i >= 0; i-- {
		// The caller may already have closed these; errors carry no news.
		_ = closers[i].Close()
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		n := nss[i]
		n.mu.Lock()
		if n.fd >= 0 {
			n.fd.Close()
			n.fd = -1
		}
		n.mu.Unlock()
		if err := removeOwned(n.name, n.inode); err != nil {
			errs = append(errs, fmt.Errorf("netns %s: %w", n.name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab %s close: %w", l.prefix, errors.Join(errs...))
	}
	return nil
}

// track registers something that lives in one of the lab's namespaces so Close
// can release it. It reports false (and closes c) when the lab is already closed.
func (l *Lab) track(c io.Closer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return false
	}
	l.closers = append(l.closers, c)
	return true
}

// Prefix returns the prefix the lab's namespaces are named with.
func (l *Lab) Prefix() string { return l.prefix }

// Namespaces returns the lab's namespaces in creation order.
func (l *Lab) Namespaces() []*NS {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*NS(nil), l.nss...)
}

// onLockedThread runs fn on a fresh goroutine locked to its OS thread and puts
// that thread back into the network namespace it started in. If restoring
// fails the goroutine exits still locked, which makes the Go runtime destroy
// the thread instead of reusing one that sits in a lab namespace. A panic in fn
// is turned into an error so the thread is restored in that case too.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()

		ferr := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic in namespace: %v", r)
				}
			}()
			return fn()
		}()

		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns (thread discarded): %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
