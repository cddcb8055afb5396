package assemble

import (
	"container/list"
	"slices"

	"github.com/pathtrace/pathtrace/trace"
)

// packet is one sk_buff life being assembled.
type packet struct {
	skb  uint64
	seq  uint64 // start order, to break ties between packets that started at the same time
	elem *list.Element

	// Past MaxHops the packet is usually looping; its start says where it came from and its
	// latest hops say where it died, so both are kept and the middle is cut.
	head     []trace.Hop
	tail     []trace.Hop // ring of the latest hops once head is full
	tailNext int

	firstNS, lastNS uint64
	// cur is the latest headers seen: route lookups are made with them, not with the first ones,
	// when NAT rewrote the packet on the way.
	cur   *trace.Headers
	curNS uint64

	// copies are the frees of other sk_buffs that were copies of this one (see copy.go).
	copies []trace.Hop

	state state
	end   *trace.Hop // the hop that freed it, nil if none was seen
	// reused: its sk_buff was seen carrying a new packet, so it was freed unseen.
	reused bool
	// incomplete: the kernel lost some of its events.
	incomplete bool
	// id is its number once it has one (see idOf); copyOf and retransmitOf its originals.
	id                   int
	copyOf, retransmitOf *packet
	// lastKind, lastIfindex and lastNetns are where its latest hop on a device was.
	lastKind    trace.Kind
	lastIfindex uint32
	lastNetns   uint32
	// netns is the latest namespace a hop named, for hops reported without one.
	netns     uint32
	netnsName string
}

type state uint8

const (
	stOpen state = iota // still being assembled
	stHeld              // closed, but held back a while for a copy that may change its fate
	stDone              // handed out
)

// closed says whether p takes no more hops of its own.
func (p *packet) closed() bool { return p.state != stOpen }

// push records h and reports whether a hop had to be cut to keep within maxHops.
func (p *packet) push(h trace.Hop, maxHops int) (cut bool) {
	if len(p.head) == 0 && len(p.tail) == 0 {
		p.firstNS, p.lastNS = h.TimeNS, h.TimeNS
	}
	p.firstNS = min(p.firstNS, h.TimeNS)
	p.lastNS = max(p.lastNS, h.TimeNS)
	// The stack clears skb->dev once a socket owns the packet; it is still where it was.
	if h.Netns == 0 {
		h.Netns, h.NetnsName = p.netns, p.netnsName
	} else {
		p.netns, p.netnsName = h.Netns, h.NetnsName
	}
	if h.Ifindex != 0 && h.TimeNS >= p.lastNS {
		p.lastKind, p.lastIfindex, p.lastNetns = h.Event, h.Ifindex, h.Netns
	}
	if h.Tuple != nil && (p.cur == nil || h.TimeNS >= p.curNS) {
		p.cur, p.curNS = h.Tuple, h.TimeNS
	}

	headCap := maxHops - maxHops/2
	tailCap := maxHops / 2
	switch {
	case len(p.head) < headCap:
		p.head = append(p.head, h)
	case len(p.tail) < tailCap:
		p.tail = append(p.tail, h)
	default:
		p.tail[p.tailNext] = h
		p.tailNext = (p.tailNext + 1) % tailCap
		return true
	}
	return false
}

// pushCopy records the free of a copy of p and reports whether it had to be left out to keep
// within maxHops. It leaves the rest of p alone: a copy says nothing of where p itself went.
func (p *packet) pushCopy(h trace.Hop, maxHops int) (cut bool) {
	if len(p.copies) >= maxHops {
		return true
	}
	h.Copy = true
	p.copies = append(p.copies, h)
	return false
}

// hops is what was kept of p's own hops, in time order; arrival order breaks ties.
func (p *packet) hops() []trace.Hop {
	hs := make([]trace.Hop, 0, len(p.head)+len(p.tail))
	hs = append(hs, p.head...)
	hs = append(hs, p.tail[p.tailNext:]...)
	hs = append(hs, p.tail[:p.tailNext]...)
	sortHops(hs)
	return hs
}

// withCopies is own (from hops) with the frees of p's copies merged in, in time order.
func (p *packet) withCopies(own []trace.Hop) []trace.Hop {
	if len(p.copies) == 0 {
		return own
	}
	hs := append(slices.Clip(own), p.copies...)
	sortHops(hs)
	return hs
}

func sortHops(hs []trace.Hop) {
	slices.SortStableFunc(hs, func(x, y trace.Hop) int {
		switch {
		case x.TimeNS < y.TimeNS:
			return -1
		case x.TimeNS > y.TimeNS:
			return 1
		}
		return 0
	})
}

// reorderSlackNS bounds how far out of time order the ring buffer delivers events from
// different CPUs; it only decides how long bookkeeping about the past is worth keeping.
const reorderSlackNS = uint64(100_000_000)

// freedSet remembers when recently freed sk_buff addresses were freed.
type freedSet struct {
	at   map[uint64]uint64
	fifo []freedRec
	head int
}

type freedRec struct{ skb, ns uint64 }

func (s *freedSet) add(skb, ns uint64, limit int) {
	s.at[skb] = ns
	s.fifo = append(s.fifo, freedRec{skb, ns})
	for len(s.fifo)-s.head > limit {
		s.pop()
	}
}

func (s *freedSet) before(skb, ns uint64) bool {
	end, ok := s.at[skb]
	return ok && ns < end
}

func (s *freedSet) prune(nowNS uint64) {
	for s.head < len(s.fifo) && s.fifo[s.head].ns+reorderSlackNS < nowNS {
		s.pop()
	}
}

func (s *freedSet) pop() {
	r := s.fifo[s.head]
	// A reused address was freed again later: that later free is the one to keep.
	if s.at[r.skb] == r.ns {
		delete(s.at, r.skb)
	}
	s.head++
	if s.head > len(s.fifo)/2 {
		s.fifo = append(s.fifo[:0], s.fifo[s.head:]...)
		s.head = 0
	}
}
