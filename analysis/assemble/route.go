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
	// lastNS is the time of the latest touch. A touch can go back in time (a route lookup
	// that waited for its packet): slack adds up how far they went, so that no hop in recent
	// is later than one touched after it by more than slack. It is 0 again once the last hop
	// touched before such a one has left recent, disorder touches later.
	lastNS   uint64
	slack    uint64
	disorder int
}

type touch struct {
	p  *packet
	ns uint64
	// What the packet did then: a forwarding lookup belongs to the packet that was just
	// received on the lookup's input device.
	received bool
	ifindex  uint32
}

func (a *Assembler) cpu(n uint32) *cpuState {
	if c := a.cpuIf(n); c != nil {
		return c
	}
	c := &cpuState{}
	a.cpus[n] = c
	if n < maxByCPU {
		if int(n) >= len(a.byCPU) {
			a.byCPU = append(a.byCPU, make([]*cpuState, int(n)+1-len(a.byCPU))...)
		}
		a.byCPU[n] = c
	}
	return c
}

// cpuIf is CPU n's state, nil if it has none yet.
func (a *Assembler) cpuIf(n uint32) *cpuState {
	if int(n) < len(a.byCPU) {
		return a.byCPU[n]
	}
	if n < maxByCPU {
		return nil
	}
	return a.cpus[n]
}

// maxByCPU bounds Assembler.byCPU: CPU numbers come from a file too.
const maxByCPU = 4096

func (c *cpuState) touch(p *packet, h *trace.Hop) {
	if h.TimeNS < c.lastNS {
		c.slack += c.lastNS - h.TimeNS
		c.disorder = recentPerCPU // until the hop before this one has left recent
	} else if c.disorder > 0 {
		if c.disorder--; c.disorder == 0 {
			c.slack = 0
		}
	}
	c.lastNS = h.TimeNS
	c.recent[c.next] = touch{p: p, ns: h.TimeNS, received: h.Event == trace.KindReceive, ifindex: h.Ifindex}
	c.next = (c.next + 1) % recentPerCPU
}

// routeMatch looks through a CPU's recent hops for the packet a route lookup at ns was made
// for: best is the latest hop within routeWindowNS of a packet the lookup fits, received the
// latest such hop within receivedRouteWindowNS that received it on the lookup's input
// device; among hops of the same time, the first in the ring.
type routeMatch struct {
	ns             uint64
	lookup         trace.Tuple
	iif            uint32
	best, received *touch
	bestAt, rxAt   int
	// A packet has several recent hops in a row: whether the lookup fits it is worked out
	// once for them.
	lastP  *packet
	lastOK bool
}

const matchWindowNS = max(routeWindowNS, receivedRouteWindowNS)

func (m *routeMatch) consider(t *touch, at int) {
	gap := max(t.ns, m.ns) - min(t.ns, m.ns)
	if t.p == nil || gap > matchWindowNS {
		return
	}
	if t.p != m.lastP {
		m.lastP, m.lastOK = t.p, !t.p.closed() && looksUp(m.lookup, t.p.cur)
	}
	if !m.lastOK {
		return
	}
	if gap <= routeWindowNS && (m.best == nil || t.ns > m.best.ns || t.ns == m.best.ns && at < m.bestAt) {
		m.best, m.bestAt = t, at
	}
	if gap <= receivedRouteWindowNS && m.iif > 1 && t.received && t.ifindex == m.iif &&
		(m.received == nil || t.ns > m.received.ns || t.ns == m.received.ns && at < m.rxAt) {
		m.received, m.rxAt = t, at
	}
}

// match finds m's hops in c.recent. It looks newest first and stops where no older hop can be
// in the window or a better match than those found, which it knows from slack: under a flood,
// after a few hops.
func (c *cpuState) match(m *routeMatch) {
	for k := 1; k <= recentPerCPU; k++ {
		i := (c.next - k + recentPerCPU) % recentPerCPU
		t := &c.recent[i]
		if t.p == nil {
			return // not filled yet: nor are the older ones
		}
		latest := t.ns + min(c.slack, ^uint64(0)-t.ns) // no older hop is later than this
		if m.ns > matchWindowNS && latest < m.ns-matchWindowNS {
			return // all older ones out of the window
		}
		if m.best != nil && latest < m.best.ns && (m.iif <= 1 || m.received != nil && latest < m.received.ns) {
			return // all older ones earlier than both matches
		}
		m.consider(t, i)
	}
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
	m := routeMatch{ns: h.TimeNS, lookup: h.Route.Lookup, iif: h.Route.Iif}
	c.match(&m)
	best, received := m.best, m.received
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
	c := a.cpuIf(ev.CPU)
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
