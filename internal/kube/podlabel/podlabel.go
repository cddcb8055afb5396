// Package podlabel names the places of a trace by pod: a hop in a pod's network namespace
// carries the pod ("default/web"), and a hop on the node's end of a pod's veth (cali*, lxc*,
// veth*...) carries the pod it leads to. It asks the container runtime which pods run on the
// node and where their namespaces are, and the kernel which devices lead into them.
package podlabel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// Lister lists the node's pods: the CRI client, or anything answering like it.
type Lister interface {
	Pods(ctx context.Context) ([]cri.Pod, error)
}

// Options says where the node's namespaces are; hostenv.Env has every answer.
type Options struct {
	// HostPath turns a path the runtime reports into one this process can open (a debug pod
	// sees the node's /var/run/netns under /host); nil uses paths as they are.
	HostPath func(string) string
	// HostNetns are files the node's own network namespace is found at, best first.
	HostNetns []string
	// NetnsDirs hold named network namespaces; the node end of a pod's veth may be in any
	// of them (or in the node's own).
	NetnsDirs []string
	// MinRefresh is how often at most the pods and devices are read again when a hop names a
	// namespace or device not seen before (default 1s); MaxAge how long what was read is
	// trusted anyway (default 10s), since the kernel hands a deleted namespace's inode to
	// the next one.
	MinRefresh, MaxAge time.Duration
	// Timeout bounds one refresh (default 2s): tracing waits for it.
	Timeout time.Duration
}

type devKey struct {
	netns   uint32
	ifindex uint32
}

type nameKey struct {
	netns  uint32
	ifname string
}

// Labeller labels hops with pods. It is safe for concurrent use.
type Labeller struct {
	list Lister
	opts Options

	mu       sync.Mutex
	byNetns  map[uint32]string  // netns inode -> pod
	byDev    map[devKey]string  // node-side device -> the pod it leads to ("" when none)
	byName   map[nameKey]string // the same by device name, for hops that carry no index
	seenNS   map[uint32]bool    // namespaces the last refresh looked at
	last     time.Time
	lastErr  error
	refreshN int
	// listFailed: the runtime did not answer last time; tracing must not wait on it every
	// second, so it is asked again only after failedRetry.
	listFailed bool
}

// failedRetry is how long a runtime that failed to answer is left alone.
const failedRetry = 30 * time.Second

// New returns a Labeller; nothing is read until the first Refresh or lookup.
func New(l Lister, o Options) *Labeller {
	if o.HostPath == nil {
		o.HostPath = func(p string) string { return p }
	}
	if o.MinRefresh == 0 {
		o.MinRefresh = time.Second
	}
	if o.MaxAge == 0 {
		o.MaxAge = 10 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	return &Labeller{list: l, opts: o}
}

// Refresh reads the pods and the devices leading to them now.
func (l *Labeller) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refresh(ctx)
}

// Err is the last refresh's error, if it failed.
func (l *Labeller) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Refreshes counts the refreshes made, for tests and benchmarks of the cache.
func (l *Labeller) Refreshes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refreshN
}

// Label sets Pod and DevicePod on every hop of p and on its fate.
func (l *Labeller) Label(p *trace.Packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range p.Hops {
		h := &p.Hops[i]
		h.Pod, h.DevicePod = l.place(h.Netns, h.Ifindex, h.Ifname)
	}
	f := &p.Fate
	f.Pod, f.DevicePod = l.place(f.Netns, 0, f.Ifname)
}

// Pod names the pod whose network namespace has inode netns, "" for none.
func (l *Labeller) Pod(netns uint32) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	pod, _ := l.place(netns, 0, "")
	return pod
}

// DevicePod names the pod the device (by index, or by name when the index is 0) in netns
// leads to, "" for none.
func (l *Labeller) DevicePod(netns, ifindex uint32, ifname string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, dev := l.place(netns, ifindex, ifname)
	return dev
}

// place looks a hop's namespace and device up, reading the node again when it names
// something the last read did not see (a pod started since), or when that read is old.
func (l *Labeller) place(netns, ifindex uint32, ifname string) (pod, devicePod string) {
	if netns == 0 {
		return "", ""
	}
	lookup := func() (string, string, bool) {
		if pod, ok := l.byNetns[netns]; ok {
			return pod, "", true
		}
		if !l.seenNS[netns] {
			return "", "", false
		}
		if ifindex == 0 && ifname == "" {
			return "", "", true
		}
		if ifindex != 0 {
			dev, ok := l.byDev[devKey{netns, ifindex}]
			return "", dev, ok
		}
		dev, ok := l.byName[nameKey{netns, ifname}]
		return "", dev, ok
	}
	pod, devicePod, known := lookup()
	age := time.Since(l.last)
	minGap := l.opts.MinRefresh
	if l.listFailed {
		minGap = max(minGap, failedRetry)
	}
	if (!known && age >= minGap) || age >= max(l.opts.MaxAge, minGap) {
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
		_ = l.refresh(ctx) // kept in lastErr; a hop without a label is still a hop
		cancel()
		pod, devicePod, _ = lookup()
	}
	return pod, devicePod
}

// nsFile is an open network namespace file (netns.Open refuses a file that is not one: from a
// debug pod without mount propagation, a namespace bind-mounted on the node after the pod
// started shows as the empty file under it).
type nsFile struct {
	*netns.File
	pod string // for a pod's namespace
}

func openNetns(path string) (*nsFile, error) {
	f, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	return &nsFile{File: f}, nil
}

// refresh rebuilds every map from scratch: the pods' namespaces from the runtime, and for the
// node's namespace and every named one, which of its devices have their peer in a pod's.
func (l *Labeller) refresh(ctx context.Context) error {
	l.last = time.Now()
	l.refreshN++
	pods, err := l.list.Pods(ctx)
	l.listFailed = err != nil
	if err != nil {
		l.lastErr = fmt.Errorf("list pods: %w", err)
		return l.lastErr
	}
	byNetns := map[uint32]string{}
	seen := map[uint32]bool{}
	var podNS []*nsFile
	defer func() {
		for _, n := range podNS {
			n.Close()
		}
	}()
	for _, p := range pods {
		if p.HostNetwork || p.NetnsPath == "" {
			continue
		}
		n, err := openNetns(l.opts.HostPath(p.NetnsPath))
		if err != nil {
			continue // a stopped sandbox's namespace is gone
		}
		if _, dup := byNetns[n.Inode()]; dup {
			n.Close() // pods come ready first: an old sandbox does not take the name
			continue
		}
		n.pod = p.Key()
		byNetns[n.Inode()] = n.pod
		seen[n.Inode()] = true
		podNS = append(podNS, n)
	}

	var nodeNS []*nsFile
	defer func() {
		for _, n := range nodeNS {
			n.Close()
		}
	}()
	add := func(path string) bool {
		n, err := openNetns(path)
		if err != nil {
			return false
		}
		if seen[n.Inode()] {
			n.Close()
			return true
		}
		seen[n.Inode()] = true
		nodeNS = append(nodeNS, n)
		return true
	}
	for _, p := range l.opts.HostNetns {
		if add(p) {
			break
		}
	}
	for _, n := range netns.List(l.opts.NetnsDirs...) {
		add(n.Path)
	}

	byDev := map[devKey]string{}
	byName := map[nameKey]string{}
	var errs []error
	for _, n := range nodeNS {
		if err := devicesIn(n, podNS, byDev, byName); err != nil {
			errs = append(errs, err)
		}
	}
	l.byNetns, l.byDev, l.byName, l.seenNS = byNetns, byDev, byName, seen
	l.lastErr = errors.Join(errs...)
	return l.lastErr
}

// devicesIn records every device of namespace n, and for those whose link partner is in a
// pod's namespace (IFLA_LINK_NETNSID: the peer of a veth, the lower device of netkit...) the
// pod. The partner's namespace is known to n by an id; n is asked the id of each pod's.
func devicesIn(n *nsFile, pods []*nsFile, byDev map[devKey]string, byName map[nameKey]string) error {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in netns %d: %w", n.Inode(), err)
	}
	defer h.Close()
	ids := map[int]string{}
	for _, p := range pods {
		if id, err := h.GetNetNsIdByFd(p.Fd()); err == nil && id >= 0 {
			ids[id] = p.pod
		}
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list devices in netns %d: %w", n.Inode(), err)
	}
	for _, link := range links {
		a := link.Attrs()
		pod := ""
		if a.NetNsID >= 0 {
			pod = ids[a.NetNsID]
		}
		byDev[devKey{n.Inode(), uint32(a.Index)}] = pod
		byName[nameKey{n.Inode(), a.Name}] = pod
	}
	return nil
}
