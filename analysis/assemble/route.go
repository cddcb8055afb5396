package assemble

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/trace"
)

// The kernel's FIB lookup never sees the sk_buff, so a route event is matched to a packet by
// where and when it ran: the same CPU, within routeWindowNS, with the looked-up addresses.
const (
	routeWindowNS = uint64(1_000_000)
	// receivedRouteWindowNS is the wider window for the packet received on an input lookup's
	// device: that match is specific, and a slow CPU (a loaded VM) can take milliseconds from
	// the receive to the lookup, while a mirred clone's hops fall in between.
	receivedRouteWindowNS = uint64(10_000_000)
	// recentPerCPU is how many recent hops per CPU are searched for a route's packet: more than
	// one CPU handles for a filtered flow within routeWindowNS.
	recentPerCPU = 64
	// pendingPerCPU caps route events waiting for their packet's first hop on one CPU.
	pendingPerCPU = 32
)

// cpuState is what one CPU did lately.
type cpuState struct {
	// nowNS is the latest event time on this CPU. Pending routes expire by it, not by the
	// latest time overall: another CPU's events may be delivered ahead of this one's.
	nowNS   uint64
	recent  [recentPerCPU]touch
	next    int
	pending []trace.Hop // route hops seen before any packet on this CPU matched them
}

type touch struct {
	p  *packet
	ns uint64
	// What the packet did then: a forwarding lookup belongs to the packet that was just
	// received on the lookup's input device.
	kind    trace.Kind
	ifindex uint32
}

func (a *Assembler) cpu(n uint32) *cpuState {
	c := a.cpus[n]
	if c == nil {
		c = &cpuState{}
		a.cpus[n] = c
	}
	return c
}

func (c *cpuState) touch(p *packet, h *trace.Hop) {
	c.recent[c.next] = touch{p: p, ns: h.TimeNS, kind: h.Event, ifindex: h.Ifindex}
	c.next = (c.next + 1) % recentPerCPU
}

// addRoute attaches a route event to the packet this CPU handled most recently that was
// looked up, or keeps it for a packet about to start: on local output the lookup comes before
// the sk_buff exists.
func (a *Assembler) addRoute(ev *trace.Event) {
	h := &ev.Hop
	if h.Route == nil {
		a.stats.RoutesUnmatched++
		return
	}
	c := a.cpu(ev.CPU)
	// An input lookup names its device: prefer the packet just received there. A clone made
	// at tc ingress (mirred) is seen after its original's receive but before its original's
	// lookup, and would otherwise take it.
	var best, received *touch
	iif := h.Route.Iif
	for i := range c.recent {
		t := &c.recent[i]
		if t.p == nil || t.p.closed() || !looksUp(h.Route.Lookup, t.p.cur) {
			continue
		}
		gap := max(t.ns, h.TimeNS) - min(t.ns, h.TimeNS)
		if gap <= routeWindowNS && (best == nil || t.ns > best.ns) {
			best = t
		}
		if gap <= receivedRouteWindowNS && iif > 1 && t.kind == trace.KindReceive && t.ifindex == iif &&
			(received == nil || t.ns > received.ns) {
			received = t
		}
	}
	if received != nil {
		best = received
	}
	if best != nil {
		a.push(best.p, ev.CPU, h)
		return
	}
	a.prunePending(c)
	if len(c.pending) >= pendingPerCPU {
		c.pending = c.pending[1:]
		a.stats.RoutesUnmatched++
	}
	c.pending = append(c.pending, *h)
}

// claimPending gives p the route events waiting on ev's CPU that looked up ev's headers. It
// runs on every hop with headers, not only a packet's first: a route looked up after DNAT
// matches the packet only once a hop shows the translated headers.
func (a *Assembler) claimPending(p *packet, ev *trace.Event) {
	c := a.cpus[ev.CPU]
	if c == nil || len(c.pending) == 0 {
		return
	}
	a.prunePending(c)
	kept := c.pending[:0]
	for i := range c.pending {
		r := &c.pending[i]
		if near(r.TimeNS, ev.Hop.TimeNS) && looksUp(r.Route.Lookup, ev.Hop.Tuple) {
			a.push(p, ev.CPU, r)
			continue
		}
		kept = append(kept, *r)
	}
	clear(c.pending[len(kept):])
	c.pending = kept
}

func (a *Assembler) prunePending(c *cpuState) {
	n := 0
	for n < len(c.pending) && c.pending[n].TimeNS+routeWindowNS < c.nowNS {
		n++
	}
	a.stats.RoutesUnmatched += n
	c.pending = c.pending[n:]
}

func near(x, y uint64) bool {
	if x > y {
		x, y = y, x
	}
	return y-x <= routeWindowNS
}

// looksUp says whether a lookup was made for a packet with headers t. Output lookups often
// leave the source unset for the kernel to choose, so then only the destination counts. A
// lookup that names a protocol was made for that protocol's packets only: iputils' ping
// connects a UDP socket to the destination to pick its source address just before it sends
// the ICMP echo, and that lookup is not the echo's.
func looksUp(l trace.Tuple, t *trace.Headers) bool {
	if t == nil || l.Dst.Unmap() != t.Dst.Unmap() {
		return false
	}
	if l.Proto != trace.ProtoAny && l.Proto != t.Proto {
		return false
	}
	return unset(l.Src) || l.Src.Unmap() == t.Src.Unmap()
}

func unset(a netip.Addr) bool { return !a.IsValid() || a.IsUnspecified() }
