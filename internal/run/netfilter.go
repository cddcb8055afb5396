package run

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/netns"
	"github.com/pathtrace/pathtrace/tracer/nftrace"
)

// netfilterWatch turns on the kernel's nftables tracing for the traced flow in every namespace
// it may cross, so a NETFILTER_DROP verdict names the rule. Its tables are owned by its
// netlink sockets: the kernel removes them when pathtrace exits, however it exits.
type netfilterWatch struct {
	mgr    *nftrace.Manager
	finder *netns.Finder
	host   uint32
	mu     sync.Mutex
	seen   map[uint32]bool
	done   chan struct{}
	// stop ends releaseGone, which closes released.
	stop, released chan struct{}
}

// watchNetfilter starts tracing in the host namespace, every named one and every one a process
// is in, before the probes
// are reported ready, and passes every drop it sees to d. netnsDirs are where named namespaces
// are (nil: netns.DefaultDirs). The error says why this kernel cannot trace nftables at all
// (no nf_tables, no CAP_NET_ADMIN); the run goes on without.
func watchNetfilter(f trace.Filter, d *diagnose.Diagnoser, netnsDirs []string) (*netfilterWatch, error) {
	if err := nftrace.Available(); err != nil {
		return nil, err
	}
	if len(netnsDirs) == 0 {
		netnsDirs = netns.DefaultDirs
	}
	any := netip.MustParsePrefix("0.0.0.0/0")
	if f.IsV6() {
		any = netip.MustParsePrefix("::/0")
	}
	a, b := f.Src, f.Dst
	if !a.IsValid() {
		a = any
	}
	if !b.IsValid() {
		b = any
	}
	w := &netfilterWatch{
		mgr:      nftrace.NewManager(a, b),
		finder:   netns.NewFinder("/proc", netnsDirs...),
		seen:     map[uint32]bool{},
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		released: make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		for drop := range w.mgr.Drops() {
			d.Netfilter(diagnose.NetfilterDrop{
				Netns: drop.Netns, Family: drop.Family, Table: drop.Table, Chain: drop.Chain, Hook: drop.Hook,
				Rule: drop.Rule, Handle: drop.Handle, Policy: drop.Policy, Src: drop.Src, Dst: drop.Dst,
				Iptables: drop.Iptables, CtState: drop.CtState, CtDirection: drop.CtDirection,
			})
		}
	}()
	if p, ino, err := netns.Host(netns.HostCandidates); err == nil {
		w.host = ino
		w.watch(ino, p)
	}
	for _, n := range netns.List(netnsDirs...) {
		w.watch(n.Inode, n.Path)
	}
	// Containers' namespaces have no name: found through their processes, they are traced
	// from the start too. Left to Seen, the first packets there (often the only ones, and
	// the very ones an input-hook rule drops) would cross them before tracing begins.
	for ino, p := range processNetns("/proc") {
		w.watch(ino, p)
	}
	go w.releaseGone(time.Second)
	return w, nil
}

// releaseGone gives back, every period, the namespaces deleted meanwhile. nftrace's sockets in
// a namespace keep it alive, and with it its devices: a deleted pod's namespace would go on
// answering packets until pathtrace exits. A namespace no path leads to any more (no name, no
// process in it) is gone for everyone else: its session is closed, and the kernel frees it.
func (w *netfilterWatch) releaseGone(period time.Duration) {
	defer close(w.released)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		var inos []uint32
		for ino := range w.seen {
			if ino != w.host {
				inos = append(inos, ino)
			}
		}
		w.mu.Unlock()
		for _, ino := range inos {
			if _, err := w.finder.Path(ino); err != nil {
				w.mu.Lock()
				delete(w.seen, ino)
				w.mu.Unlock()
				_ = w.mgr.Unwatch(ino)
			}
		}
	}
}

func (w *netfilterWatch) watch(ino uint32, path string) {
	w.mu.Lock()
	if w.seen[ino] {
		w.mu.Unlock()
		return
	}
	w.seen[ino] = true
	w.mu.Unlock()
	w.mgr.Watch(ino, path)
	if w.mgr.Tracing(ino) {
		nftraced.Store(ino, true)
	}
}

// nftraced holds the namespaces whose nftables drops a run of this process reported (Watch
// succeeded there): a netfilter drop no rule was reported for is then known to be no nftables
// rule's. It outlives the watch (the verdict is made after it closes).
var nftraced sync.Map

// Seen makes sure a namespace the flow was seen in is traced (one that appeared after start).
func (w *netfilterWatch) Seen(ino uint32) {
	if ino == 0 {
		return
	}
	w.mu.Lock()
	known := w.seen[ino]
	w.mu.Unlock()
	if known {
		return
	}
	go func() {
		if p, err := w.finder.Path(ino); err == nil {
			w.watch(ino, p)
		}
	}()
}

// Close removes every tracing table and waits for the last drops to be handed over.
func (w *netfilterWatch) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.released
	err := w.mgr.Close()
	<-w.done
	return err
}

// processNetns lists the network namespaces processes are in, one path each (/proc/<pid>/ns/net).
func processNetns(proc string) map[uint32]string {
	out := map[uint32]string{}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p := filepath.Join(proc, e.Name(), "ns", "net")
		if ino, err := netns.Inode(p); err == nil {
			if _, ok := out[ino]; !ok {
				out[ino] = p
			}
		}
	}
	return out
}
