// Package assemble turns the kernel's stream of per-hop events into packets: one per sk_buff
// life, with route decisions and the frees of its socket copies attached and a fate decided. It
// needs no kernel, so a saved event stream can be replayed through it.
package assemble

import (
	"cmp"
	"slices"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

// Options tunes how long the assembler waits and how much it keeps.
type Options struct {
	// Idle: a packet with no new hop for this long (in event time) is complete even without a
	// free. Default 2s.
	Idle time.Duration
	// MaxOpen caps the packets being assembled at once; past it the least recently active one is
	// completed early. Default 65536.
	MaxOpen int
	// MaxHops caps the hops kept per packet; past it the first and the latest halves are kept.
	// Default 256, at least 2.
	MaxHops int
}

const (
	defaultIdle    = 2 * time.Second
	defaultMaxOpen = 65536
	defaultMaxHops = 256
	// maxHeld bounds the packets held back for a copy (see copy.go); past it the oldest is
	// handed out before its time is up. A flood of drops (UDP to a closed port) would otherwise
	// hold a second of them, tens of MB; at its rate the bound is still tens of milliseconds,
	// more than a socket takes to read its copy.
	maxHeld = 2048
)

// Stats counts what the assembler had to leave out, so a run can say how complete it is.
type Stats struct {
	Completed int // packets handed out
	Evicted   int // completed early because MaxOpen packets were open
	HopsCut   int // hops not kept because their packet reached MaxHops
	// RoutesUnmatched counts route events no packet on their CPU claimed in time.
	RoutesUnmatched int
	// Stragglers counts events for an sk_buff already freed that arrived after its free.
	Stragglers int
	// Orphans counts non-route events without an sk_buff address.
	Orphans int
	// Copies counts frees of sk_buff copies (socket clones) kept as hops of their original.
	Copies int
}

// Assembler is not safe for concurrent use: the tracer feeds it from its one reader goroutine.
type Assembler struct {
	filter  trace.Filter
	idleNS  uint64
	maxOpen int
	maxHops int

	open  map[uint64]*packet // by sk_buff address
	lru   lruList            // the open packets, least recently active first
	cpus  map[uint32]*cpuState
	byCPU []*cpuState // cpus numbered below maxByCPU, by number: looked up on every event
	freed freedSet
	// copies finds the packet a lone free is a copy of; held are the packets closed with a
	// NO_SOCKET drop that wait for one, in the order they closed.
	copies   copyIndex
	held     []*packet
	heldHead int
	early    []earlyCopy
	waiting  map[copyKey]struct{} // packets known only by their neighbour probe's copy
	nat      natMemory            // translations seen, to place packets the filter does not name
	segments segmentIndex

	// spare are emptied hop buffers no packet uses (given back by Recycle, or not handed
	// out), for new packets' hops to grow in.
	spare [][]trace.Hop
	// out holds the packets a call hands out; the next call reuses it.
	out []trace.Packet

	nowNS   uint64 // latest event time seen
	nextID  int
	nextSeq uint64
	stats   Stats
}

// New makes an assembler for a run traced with filter f.
func New(f trace.Filter, opts Options) *Assembler {
	a := &Assembler{
		filter:   f,
		idleNS:   uint64(defaultIdle),
		maxOpen:  defaultMaxOpen,
		maxHops:  defaultMaxHops,
		open:     make(map[uint64]*packet),
		cpus:     make(map[uint32]*cpuState),
		freed:    freedSet{at: make(map[uint64]uint64)},
		copies:   newCopyIndex(copyIndexMax),
		nat:      natMemory{},
		segments: segmentIndex{},
	}
	if opts.Idle > 0 {
		a.idleNS = uint64(opts.Idle)
	}
	if opts.MaxOpen > 0 {
		a.maxOpen = opts.MaxOpen
	}
	if opts.MaxHops > 0 {
		a.maxHops = max(opts.MaxHops, 2)
	}
	return a
}

// Stats reports the counts so far.
func (a *Assembler) Stats() Stats { return a.stats }

// Add takes one event in ring-buffer order and returns the packets it completed: the packet it
// freed, a packet evicted to make room for a new one, and packets held for a copy whose time is
// up. A packet dropped with NO_SOCKET is held for copyWindowNS of event time (see copy.go).
//
// The slice returned by Add, Expire and Flush is good until the next call to any of them: a
// live run handles its packets at once, and the next call reuses it.
func (a *Assembler) Add(ev trace.Event) []trace.Packet {
	out := a.reuseOut()
	a.add(&ev, out)
	return *out
}

// reuseOut empties the slice a call hands its packets out in.
func (a *Assembler) reuseOut() *[]trace.Packet {
	clear(a.out) // the last call's packets are the caller's now
	a.out = a.out[:0]
	return &a.out
}

func (a *Assembler) add(ev *trace.Event, out *[]trace.Packet) {
	h := &ev.Hop
	a.nowNS = max(a.nowNS, h.TimeNS)
	c := a.cpu(ev.CPU)
	c.nowNS = max(c.nowNS, h.TimeNS)
	a.release(a.nowNS, out)
	if ev.SKB == 0 {
		if h.Event == trace.KindRoute {
			a.addRoute(ev)
		} else {
			a.stats.Orphans++
		}
		return
	}
	a.freed.prune(a.nowNS)
	a.copies.prune(a.nowNS)

	free := h.Event == trace.KindDrop || h.Event == trace.KindConsume
	p := a.open[ev.SKB]
	if p != nil && ev.First {
		// The kernel started a new life at this address: the packet it carried was freed
		// where no tracepoint sees, and this event is another packet's.
		p.reused = true
		a.complete(p, nil, out)
		p = nil
	}
	if p == nil {
		// A hop older than the free of this address belongs to the life that already ended:
		// starting a packet with it would invent a packet that never ends.
		if a.freed.before(ev.SKB, h.TimeNS) {
			a.stats.Stragglers++
			return
		}
		if orig := a.copyOf(h); orig != nil {
			if orig.copies == nil {
				orig.copies = a.spareHops()
			}
			if orig.pushCopy(*h, a.maxHops) {
				a.stats.HopsCut++
			}
			a.stats.Copies++
			a.freed.add(ev.SKB, h.TimeNS, a.maxOpen)
			return
		}
		if a.keepEarly(ev) {
			a.freed.add(ev.SKB, h.TimeNS, a.maxOpen)
			return
		}
		if len(a.open) >= a.maxOpen {
			a.complete(a.lru.front, nil, out)
			a.stats.Evicted++
		}
		p = a.start(ev.SKB)
		a.relate(p, h)
	}
	p.incomplete = p.incomplete || ev.Gap
	a.addHop(p, ev)
	if free {
		a.complete(p, h, out)
		a.freed.add(ev.SKB, h.TimeNS, a.maxOpen)
	}
}

// Expire completes packets whose latest hop is older than nowNS-Idle, after the packets held
// for a copy until before nowNS.
func (a *Assembler) Expire(nowNS uint64) []trace.Packet {
	out := a.reuseOut()
	a.release(nowNS, out)
	if nowNS < a.idleNS {
		return *out
	}
	cutoff := nowNS - a.idleNS
	var idle []*packet
	for p := a.lru.front; p != nil; p = p.next {
		if p.lastNS < cutoff {
			idle = append(idle, p)
		} else if p.lastNS >= cutoff+reorderSlackNS {
			// The list is in arrival order and arrival is at most reorderSlackNS out of time
			// order, so nothing further on can be idle.
			break
		}
	}
	a.completeAll(idle, out)
	return *out
}

// Flush hands out the packets held for a copy, completes every open packet and forgets route
// events still waiting: the run is over.
func (a *Assembler) Flush() []trace.Packet {
	out := a.reuseOut()
	a.release(^uint64(0), out)
	all := make([]*packet, 0, len(a.open))
	for p := a.lru.front; p != nil; p = p.next {
		all = append(all, p)
	}
	for _, c := range a.cpus {
		a.stats.RoutesUnmatched += len(c.pending)
	}
	a.cpus, a.byCPU = make(map[uint32]*cpuState), nil
	a.freed = freedSet{at: make(map[uint64]uint64)}
	a.copies = newCopyIndex(copyIndexMax)
	a.completeAll(all, out)
	return *out
}

// Replay assembles a whole recorded stream: every event, then a flush.
func Replay(f trace.Filter, opts Options, events []trace.Event) []trace.Packet {
	a := New(f, opts)
	var out []trace.Packet
	for _, ev := range events {
		out = append(out, a.Add(ev)...)
	}
	return append(out, a.Flush()...)
}

func (a *Assembler) start(skb uint64) *packet {
	a.nextSeq++
	p := &packet{skb: skb, seq: a.nextSeq}
	a.lru.pushBack(p)
	a.open[skb] = p
	return p
}

// addHop records ev on p and lets route events waiting on that CPU find their packet.
func (a *Assembler) addHop(p *packet, ev *trace.Event) {
	a.push(p, ev.CPU, &ev.Hop)
	if h := &ev.Hop; h.Tuple != nil {
		a.claimPending(p, ev)
		// Hops in a row with the same headers in the same namespace are one key of the copy
		// index: noted again only to move its time on, which a tenth of a second either way
		// does not change.
		n := &p.noted
		if n.tuple == nil || h.Netns != n.netns || h.TimeNS > n.ns+reorderSlackNS || h.Tuple != n.tuple && *h.Tuple != *n.tuple {
			a.copies.note(p, h)
			n.tuple, n.netns, n.ns = h.Tuple, h.Netns, h.TimeNS
		}
		a.claimEarly(p, h)
	}
}

func (a *Assembler) push(p *packet, cpu uint32, h *trace.Hop) {
	if p.head == nil {
		p.head = a.spareHops()
	}
	if p.push(h, a.maxHops) {
		a.stats.HopsCut++
	}
	a.lru.moveToBack(p)
	a.cpu(cpu).touch(p, h)
}

// completeAll completes packets in the order they started, so IDs within one batch read in
// time order whatever order the map or list held them in. None of them ended with a free, so
// none is held.
func (a *Assembler) completeAll(ps []*packet, out *[]trace.Packet) {
	slices.SortFunc(ps, func(x, y *packet) int {
		return cmp.Or(cmp.Compare(x.firstNS, y.firstNS), cmp.Compare(x.seq, y.seq))
	})
	for _, p := range ps {
		a.complete(p, nil, out)
	}
}

// complete closes p and numbers it; end is the hop that freed it, nil when it ended without a
// free. It appends p to out, or nothing when p was dropped with NO_SOCKET: then p is held until
// a later call releases it, for a copy of it a socket consumed may yet turn up.
func (a *Assembler) complete(p *packet, end *trace.Hop, out *[]trace.Packet) {
	delete(a.open, p.skb)
	a.lru.remove(p)
	if end != nil {
		p.end, p.hasEnd = endOf(end), true
	}
	if overturnable(end) {
		p.state = stHeld
		a.held = append(a.held, p)
		if len(a.held)-a.heldHead > min(a.maxOpen, maxHeld) {
			*out = append(*out, a.emit(a.popHeld()))
		}
		return
	}
	*out = append(*out, a.emit(p))
}

// release hands out, in the order they closed, the held packets whose drop is more than
// copyWindowNS before nowNS. Drops arrive at most reorderSlackNS out of time order, so one
// waits at most that much longer behind another closed before it.
func (a *Assembler) release(nowNS uint64, out *[]trace.Packet) {
	a.releaseEarly(nowNS, out)
	for a.heldHead < len(a.held) {
		p := a.held[a.heldHead]
		if nowNS != ^uint64(0) && p.end.timeNS+copyWindowNS >= nowNS {
			break
		}
		*out = append(*out, a.emit(a.popHeld()))
	}
}

func (a *Assembler) popHeld() *packet {
	p := a.held[a.heldHead]
	a.held[a.heldHead] = nil
	a.heldHead++
	if a.heldHead == len(a.held) {
		a.held, a.heldHead = a.held[:0], 0
	} else if a.heldHead > len(a.held)/2 {
		a.held = append(a.held[:0], a.held[a.heldHead:]...)
		a.heldHead = 0
	}
	return p
}

// maxSpare bounds the spare hop buffers: more than a burst of packets closing together
// needs, few enough that a buffer grown by a looping packet is not kept for long.
const maxSpare = 64

// Recycle takes back the hops of packets this Assembler handed out that the caller is done
// with: nothing may use their Hops any more (Recycle sets them to nil). New packets' hops are
// then assembled in them instead of in new memory, which a busy flow's packets would otherwise
// take at some 2 KiB each. A live run recycles each packet once it has printed and written it;
// a caller that keeps its packets (Replay) does not call it.
func (a *Assembler) Recycle(ps []trace.Packet) {
	for i := range ps {
		a.recycle(ps[i].Hops)
		ps[i].Hops = nil
	}
}

// spareHops is a hop buffer to build a packet's hops in, nil if none is spare.
func (a *Assembler) spareHops() []trace.Hop {
	if len(a.spare) == 0 {
		return nil
	}
	hs := a.spare[len(a.spare)-1]
	a.spare = a.spare[:len(a.spare)-1]
	return hs
}

// recycle keeps hs, a hop buffer no packet uses, for a new packet's hops.
func (a *Assembler) recycle(hs []trace.Hop) {
	if cap(hs) == 0 || len(a.spare) >= maxSpare || cap(hs) > 4*initialHops {
		return
	}
	clear(hs) // what its hops point to is not to be kept alive by it (nothing past len is set)
	a.spare = append(a.spare, hs[:0])
}

// idOf numbers p. Packets are numbered as handed out, not as closed (a packet held for a copy
// must not print as #1 after #3), unless a clone or retransmission needs to name its original
// first.
func (a *Assembler) idOf(p *packet) int {
	if p.id == 0 {
		a.nextID++
		p.id = a.nextID
	}
	return p.id
}

// emit hands p out: its hops with its copies' frees, its headers, direction and fate.
func (a *Assembler) emit(p *packet) trace.Packet {
	a.stats.Completed++
	own := p.hops()
	pkt := trace.Packet{ID: a.idOf(p), Incomplete: p.incomplete}
	if p.copyOf != nil {
		pkt.CopyOf = a.idOf(p.copyOf)
	}
	if p.retransmitOf != nil {
		pkt.RetransmitOf = a.idOf(p.retransmitOf)
	}
	if t := firstTuple(own); t != nil {
		pkt.Tuple = *t
	}
	pkt.Flow, pkt.FlowTuple = trace.Request, pkt.Tuple.Tuple
	if dir, flow, ok := classify(a.filter, a.nat, own); ok {
		pkt.Flow, pkt.FlowTuple = dir, flow
		a.nat.learn(a.filter, dir, flow, own)
	}
	var end *trace.Hop
	if p.hasEnd {
		e := p.end.hop()
		end = &e
	}
	trace.SortHops(p.copies)
	pkt.Fate = copyDelivered(fate(own, end, p.reused), own, end, p.copies)
	if pkt.Fate.Outcome == trace.Unknown && pkt.Fate.Note == "" {
		pkt.Fate.Note = waitingFor(own, p.copies)
	}
	// Last, as the copies may be merged into own's buffer.
	pkt.Hops = own
	if len(p.copies) > 0 {
		var buf []trace.Hop
		if cap(own) < len(own)+len(p.copies) {
			buf = a.spareHops()
		}
		pkt.Hops = p.withCopies(own, buf)
		a.recycle(p.copies)
	}
	if len(p.head) > 0 && &pkt.Hops[0] != &p.head[0] {
		a.recycle(p.head) // not handed out
	}
	// CPUs' recent-hop rings and the copy index may point at p a while longer: keep only the
	// small struct alive.
	p.state, p.head, p.tail, p.cur, p.copies, p.end, p.hasEnd = stDone, nil, nil, nil, nil, endHop{}, false
	return pkt
}
