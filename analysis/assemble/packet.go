package assemble

import (
	"github.com/pathtrace/pathtrace/trace"
)

// packet is one sk_buff life being assembled.
type packet struct {
	skb uint64
	seq uint64 // start order, to break ties between packets that started at the same time
	// prev and next link the open packets in the Assembler's lruList.
	prev, next *packet
	listed     bool

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
	// noted is what p was last noted in the copy index with.
	noted struct {
		tuple *trace.Headers
		netns uint32
		ns    uint64
	}

	// copies are the frees of other sk_buffs that were copies of this one (see copy.go).
	copies []trace.Hop

	state state
	// end is what fate and copy.go read of the hop that freed it, when one was seen
	// (hasEnd): kept in p, not as a copy of the hop of its own.
	end    endHop
	hasEnd bool
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

// endHop is what is kept of the hop that freed a packet.
type endHop struct {
	timeNS           uint64
	event            trace.Kind
	reason, location string
	netns            uint32
}

func endOf(h *trace.Hop) endHop {
	return endHop{timeNS: h.TimeNS, event: h.Event, reason: h.Reason, location: h.Location, netns: h.Netns}
}

// hop is e as the hop it was, as far as fate and copyDelivered look.
func (e *endHop) hop() trace.Hop {
	return trace.Hop{TimeNS: e.timeNS, Event: e.event, Reason: e.reason, Location: e.location, Place: trace.Place{Netns: e.netns}}
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
func (p *packet) push(hop *trace.Hop, maxHops int) (cut bool) {
	if len(p.head) == 0 && len(p.tail) == 0 {
		p.firstNS, p.lastNS = hop.TimeNS, hop.TimeNS
	}
	// The hop is copied where it is kept, once (a hop is a large struct), and set right there.
	var h *trace.Hop
	headCap := maxHops - maxHops/2
	tailCap := maxHops / 2
	switch {
	case len(p.head) < headCap:
		if p.head == nil {
			// Most packets have a handful of hops: one allocation, not one per doubling.
			p.head = make([]trace.Hop, 0, min(headCap, initialHops))
		}
		p.head = append(p.head, *hop)
		h = &p.head[len(p.head)-1]
	case len(p.tail) < tailCap:
		p.tail = append(p.tail, *hop)
		h = &p.tail[len(p.tail)-1]
	default:
		p.tail[p.tailNext] = *hop
		h = &p.tail[p.tailNext]
		p.tailNext = (p.tailNext + 1) % tailCap
		cut = true
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
	if h.Tuple != nil && p.cur != nil && h.Tuple != p.cur && *h.Tuple == *p.cur {
		// Most hops of a packet carry the headers of the one before: one copy serves them all
		// while the packet is open, often in thousands behind a busy socket.
		h.Tuple = p.cur
	}
	if h.Tuple != nil && (p.cur == nil || h.TimeNS >= p.curNS) {
		p.cur, p.curNS = h.Tuple, h.TimeNS
	}
	return cut
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

// initialHops is the room a packet's hops start with.
const initialHops = 8

// hops is what was kept of p's own hops, in time order; arrival order breaks ties. It is p's
// own buffer when nothing was cut: handed out with the packet when p has no copies.
func (p *packet) hops() []trace.Hop {
	if len(p.tail) == 0 {
		trace.SortHops(p.head)
		return p.head
	}
	hs := make([]trace.Hop, 0, len(p.head)+len(p.tail))
	hs = append(hs, p.head...)
	hs = append(hs, p.tail[p.tailNext:]...)
	hs = append(hs, p.tail[:p.tailNext]...)
	trace.SortHops(hs)
	return hs
}

// withCopies is own (from hops) with the frees of p's copies merged in, in time order; own
// first among hops of the same time. It sorts p.copies. The hops are merged in own's buffer
// when it has room, else in buf (nil: a new one).
func (p *packet) withCopies(own, buf []trace.Hop) []trace.Hop {
	trace.SortHops(p.copies)
	n := len(own) + len(p.copies)
	if cap(own) >= n {
		// In place, from the back: own's hops do not move before they are read.
		hs := own[:n]
		i, j := len(own)-1, len(p.copies)-1
		for k := n - 1; j >= 0; k-- {
			if i >= 0 && own[i].TimeNS > p.copies[j].TimeNS {
				hs[k] = own[i]
				i--
			} else {
				hs[k] = p.copies[j]
				j--
			}
		}
		return hs
	}
	hs := buf[:0]
	if cap(hs) < n {
		hs = make([]trace.Hop, 0, max(n, 2*initialHops))
	}
	i, j := 0, 0
	for i < len(own) || j < len(p.copies) {
		if j == len(p.copies) || (i < len(own) && own[i].TimeNS <= p.copies[j].TimeNS) {
			hs = append(hs, own[i])
			i++
		} else {
			hs = append(hs, p.copies[j])
			j++
		}
	}
	return hs
}

// lruList holds the open packets, least recently active first, linked through the packets
// themselves so that starting one allocates nothing more.
type lruList struct{ front, back *packet }

func (l *lruList) pushBack(p *packet) {
	p.prev, p.next, p.listed = l.back, nil, true
	if l.back != nil {
		l.back.next = p
	} else {
		l.front = p
	}
	l.back = p
}

func (l *lruList) remove(p *packet) {
	if !p.listed {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.front = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.back = p.prev
	}
	p.prev, p.next, p.listed = nil, nil, false
}

// moveToBack marks p the most recently active, if it is still open.
func (l *lruList) moveToBack(p *packet) {
	if p.listed && l.back != p {
		l.remove(p)
		l.pushBack(p)
	}
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
