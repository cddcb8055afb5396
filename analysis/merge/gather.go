package merge

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

// Matching needs every node's packets at once: a packet is joined by identity and by time with
// its counterparts on every other node, the clocks are estimated from all the joins, and the
// journey is numbered again as a whole. So merge holds the packets, but a bounded number of
// them: Gather keeps, of all the traces' packets, the maxPackets that began first. That is the
// first stretch of the run on every node alike (the packets of the same seconds, which are the
// ones that can match), not all of one trace and none of the next; and the merged trace says
// where it was cut. A trace's packets are in the order they completed, not the order they
// began (one that left the host completes when it has been idle a while), so the first to
// begin are found by keeping the earliest seen so far, not by stopping early.

// DefaultMaxPackets is how many packets Gather holds of all the traces together: five live
// runs' worth at their default --max-packets, and some 400 MB for `pathtrace merge` with
// packets of a dozen hops (380 MB of RSS measured, 3 KB of JSON a packet), which merge holds
// twice over at its peak: as read, and joined.
const DefaultMaxPackets = 50000

// Stream is one node's trace as it is read from the front (jsontrace.Reader is one): the
// document before the packets, the packets one at a time (io.EOF after the last), then the
// rest of it.
type Stream interface {
	Head() (*trace.Trace, error)
	Next() (*trace.Packet, error)
	Tail() (*trace.Trace, error)
}

// Cut says what Gather left out to keep within its bound; nil when it left out nothing.
type Cut struct {
	MaxPackets int
	// At is when the first packet left out began, on its node's clock: the packets held began
	// before it, on each node's own clock. Since is the earliest start of the traces.
	At, Since time.Time
	Sources   []string
	LeftOut   []int // per trace, its packets read and not held
}

// String is the line the merged trace carries in its header (meta.degraded).
func (c *Cut) String() string {
	var left []string
	for i, n := range c.LeftOut {
		if n > 0 {
			left = append(left, fmt.Sprintf("%d of %s", n, c.Sources[i]))
		}
	}
	return fmt.Sprintf("merge holds at most %d packets (--max-packets): only those that began in the first %s, before %s, were merged; left out: %s",
		c.MaxPackets, c.At.Sub(c.Since).Round(time.Millisecond), c.At.UTC().Format("15:04:05.000 UTC"), strings.Join(left, ", "))
}

// Gather reads the traces of streams, named by sources, into Merge's inputs, one after the
// other, holding at most maxPackets packets (DefaultMaxPackets when 0) of all of them: those
// that began first, each on its own node's clock. The others are read (checked) and counted in
// the Cut, not held. Its errors are the streams'.
func Gather(sources []string, streams []Stream, maxPackets int) ([]Input, *Cut, error) {
	if len(sources) != len(streams) {
		return nil, nil, errors.New("merge: one source name per trace")
	}
	if maxPackets <= 0 {
		maxPackets = DefaultMaxPackets
	}
	n := len(streams)
	inputs := make([]Input, n)
	kept := &latest{}
	var since time.Time
	var firstLeft int64 // when the earliest packet left out began
	leftOut := make([]int, n)
	for i, s := range streams {
		h, err := s.Head()
		if err != nil {
			return nil, nil, err
		}
		start := h.Meta.StartedAt.UnixNano()
		if i == 0 || h.Meta.StartedAt.Before(since) {
			since = h.Meta.StartedAt
		}
		for seq := 0; ; seq++ {
			p, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, nil, err
			}
			k := heldPacket{p: p, began: start + beginning(p), input: i, seq: seq}
			if kept.Len() == maxPackets {
				// Full: of the held packets and this one, the one that began last goes.
				if k.began < (*kept)[0].began {
					k, (*kept)[0] = (*kept)[0], k
					heap.Fix(kept, 0)
				}
				leftOut[k.input]++
				if firstLeft == 0 || k.began < firstLeft {
					firstLeft = k.began
				}
				continue
			}
			heap.Push(kept, k)
		}
		t, err := s.Tail()
		if err != nil {
			return nil, nil, err
		}
		tr := *t
		tr.Packets = nil
		inputs[i] = Input{Source: sources[i], Trace: &tr}
	}
	// Each trace's packets in its own order.
	slices.SortFunc(*kept, func(a, b heldPacket) int { return cmp.Or(a.input-b.input, a.seq-b.seq) })
	for _, k := range *kept {
		t := inputs[k.input].Trace
		t.Packets = append(t.Packets, *k.p)
	}
	if slices.ContainsFunc(leftOut, func(n int) bool { return n > 0 }) {
		return inputs, &Cut{MaxPackets: maxPackets, At: time.Unix(0, firstLeft), Since: since, Sources: sources, LeftOut: leftOut}, nil
	}
	return inputs, nil, nil
}

// heldPacket is a packet Gather holds: when it began, and where it was in which trace.
type heldPacket struct {
	p          *trace.Packet
	began      int64
	input, seq int
}

// latest is a heap of the held packets, the one that began last on top.
type latest []heldPacket

func (h latest) Len() int           { return len(h) }
func (h latest) Less(i, j int) bool { return h[i].began > h[j].began }
func (h latest) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *latest) Push(x any)        { *h = append(*h, x.(heldPacket)) }
func (h *latest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// beginning is when p's first hop was seen, in ns from its trace's start: where prepare places
// it too.
func beginning(p *trace.Packet) int64 {
	if len(p.Hops) == 0 {
		return 0
	}
	first := p.Hops[0].TimeNS
	for _, h := range p.Hops[1:] {
		first = min(first, h.TimeNS)
	}
	return int64(first)
}
