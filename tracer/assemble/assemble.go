// Package assemble turns the kernel's stream of per-hop events into packets: one per sk_buff
// life, with route decisions attached and a fate decided. It needs no kernel, so a saved event
// stream can be replayed through it.
package assemble

import (
	"cmp"
	"container/list"
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
}

// Assembler is not safe for concurrent use: the tracer feeds it from its one reader goroutine.
type Assembler struct {
	filter  trace.Filter
	idleNS  uint64
	maxOpen int
	maxHops int

	open  map[uint64]*packet // by sk_buff address
	lru   list.List          // of *packet, least recently active first
	cpus  map[uint32]*cpuState
	freed freedSet

	nowNS   uint64 // latest event time seen
	nextID  int
	nextSeq uint64
	stats   Stats
}

// New makes an assembler for a run traced with filter f.
func New(f trace.Filter, opts Options) *Assembler {
	a := &Assembler{
		filter:  f,
		idleNS:  uint64(defaultIdle),
		maxOpen: defaultMaxOpen,
		maxHops: defaultMaxHops,
		open:    make(map[uint64]*packet),
		cpus:    make(map[uint32]*cpuState),
		freed:   freedSet{at: make(map[uint64]uint64)},
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
// freed, and a packet evicted to make room for a new one.
func (a *Assembler) Add(ev trace.Event) []trace.Packet {
	h := ev.Hop
	a.nowNS = max(a.nowNS, h.TimeNS)
	c := a.cpu(ev.CPU)
	c.nowNS = max(c.nowNS, h.TimeNS)
	if ev.SKB == 0 {
		if h.Event == trace.KindRoute {
			a.addRoute(ev)
		} else {
			a.stats.Orphans++
		}
		return nil
	}
	a.freed.prune(a.nowNS)

	var out []trace.Packet
	p := a.open[ev.SKB]
	if p == nil {
		// A hop older than the free of this address belongs to the life that already ended:
		// starting a packet with it would invent a packet that never ends.
		if a.freed.before(ev.SKB, h.TimeNS) {
			a.stats.Stragglers++
			return nil
		}
		if len(a.open) >= a.maxOpen {
			oldest := a.lru.Front().Value.(*packet)
			out = append(out, a.complete(oldest, nil))
			a.stats.Evicted++
		}
		p = a.start(ev.SKB)
	}
	a.addHop(p, ev)
	if h.Event == trace.KindDrop || h.Event == trace.KindConsume {
		out = append(out, a.complete(p, &h))
		a.freed.add(ev.SKB, h.TimeNS, a.maxOpen)
	}
	return out
}

// Expire completes packets whose latest hop is older than nowNS-Idle.
func (a *Assembler) Expire(nowNS uint64) []trace.Packet {
	if nowNS < a.idleNS {
		return nil
	}
	cutoff := nowNS - a.idleNS
	var idle []*packet
	for e := a.lru.Front(); e != nil; e = e.Next() {
		p := e.Value.(*packet)
		if p.lastNS < cutoff {
			idle = append(idle, p)
		} else if p.lastNS >= cutoff+reorderSlackNS {
			// The list is in arrival order and arrival is at most reorderSlackNS out of time
			// order, so nothing further on can be idle.
			break
		}
	}
	return a.completeAll(idle)
}

// Flush completes every open packet and forgets route events still waiting: the run is over.
func (a *Assembler) Flush() []trace.Packet {
	all := make([]*packet, 0, len(a.open))
	for e := a.lru.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*packet))
	}
	for _, c := range a.cpus {
		a.stats.RoutesUnmatched += len(c.pending)
	}
	a.cpus = make(map[uint32]*cpuState)
	a.freed = freedSet{at: make(map[uint64]uint64)}
	return a.completeAll(all)
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
	p.elem = a.lru.PushBack(p)
	a.open[skb] = p
	return p
}

// addHop records ev on p and lets route events waiting on that CPU find their packet.
func (a *Assembler) addHop(p *packet, ev trace.Event) {
	a.push(p, ev)
	if ev.Hop.Tuple != nil {
		a.claimPending(p, ev)
	}
}

func (a *Assembler) push(p *packet, ev trace.Event) {
	if p.push(ev.Hop, a.maxHops) {
		a.stats.HopsCut++
	}
	a.lru.MoveToBack(p.elem)
	a.cpu(ev.CPU).touch(p, ev.Hop.TimeNS)
}

// completeAll completes packets in the order they started, so IDs within one batch read in
// time order whatever order the map or list held them in.
func (a *Assembler) completeAll(ps []*packet) []trace.Packet {
	slices.SortFunc(ps, func(x, y *packet) int {
		return cmp.Or(cmp.Compare(x.firstNS, y.firstNS), cmp.Compare(x.seq, y.seq))
	})
	out := make([]trace.Packet, 0, len(ps))
	for _, p := range ps {
		out = append(out, a.complete(p, nil))
	}
	return out
}

// complete closes p; end is the hop that freed it, nil when it ended without a free.
func (a *Assembler) complete(p *packet, end *trace.Hop) trace.Packet {
	delete(a.open, p.skb)
	a.lru.Remove(p.elem)
	a.nextID++
	a.stats.Completed++
	hops := p.hops()
	pkt := trace.Packet{ID: a.nextID, Hops: hops}
	if t := firstTuple(hops); t != nil {
		pkt.Tuple = *t
	}
	pkt.Flow = direction(a.filter, hops)
	pkt.Fate = fate(hops, end)
	// CPUs' recent-hop rings may point at p a while longer: keep only the small struct alive.
	p.closed, p.head, p.tail, p.cur = true, nil, nil, nil
	return pkt
}
