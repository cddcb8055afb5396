package assemble

import "github.com/pathtrace/pathtrace/trace"

func firstTuple(hops []trace.Hop) *trace.Headers {
	for i := range hops {
		if hops[i].Tuple != nil {
			return hops[i].Tuple
		}
	}
	return nil
}

// classify says which way the packet went and which flow it belongs to (its request-direction
// tuple). The first headers the filter matches decide, the first hop's before the others: a
// packet tracked across NAT may start with headers the filter never named. A packet none of
// whose headers the filter matches is placed by the NAT translations learned from earlier
// packets: the reply to a MASQUERADEd request arrives addressed to the node, and dies there
// before conntrack rewrites it back.
func classify(f trace.Filter, nat natMemory, hops []trace.Hop) (trace.Direction, trace.Tuple, bool) {
	if d, t, ok := matched(f, firstTuple(hops), hops); ok {
		return d, t, true
	}
	for i := range hops {
		if t := hops[i].Tuple; t != nil {
			if e, ok := nat[t.Tuple]; ok {
				return e.dir, e.flow, true
			}
		}
	}
	return "", trace.Tuple{}, false
}

// matched finds the first headers the filter matches, first then each hop's, and returns
// their direction and the flow's tuple in the request direction.
func matched(f trace.Filter, first *trace.Headers, hops []trace.Hop) (trace.Direction, trace.Tuple, bool) {
	if first != nil {
		if d, ok := f.Direction(first.Tuple); ok {
			return d, oriented(d, first.Tuple), true
		}
	}
	for i := range hops {
		if t := hops[i].Tuple; t != nil {
			if d, ok := f.Direction(t.Tuple); ok {
				return d, oriented(d, t.Tuple), true
			}
		}
	}
	return "", trace.Tuple{}, false
}

// natMemory maps the tuples NAT rewrote a flow's packets into, in both orientations, to the
// flow and the direction a packet carrying them travels.
type natMemory map[trace.Tuple]natEntry

type natEntry struct {
	dir  trace.Direction
	flow trace.Tuple
}

// natMemoryCap bounds what is remembered: a long trace of a busy NAT must not grow without end.
const natMemoryCap = 1 << 16

// learn records the tuples the packet's hops carried that the filter does not name (NAT's work)
// as belonging to flow.
func (m natMemory) learn(f trace.Filter, dir trace.Direction, flow trace.Tuple, hops []trace.Hop) {
	back := trace.Reply
	if dir == trace.Reply {
		back = trace.Request
	}
	var last *trace.Tuple
	for i := range hops {
		t := hops[i].Tuple
		if t == nil || len(m) >= natMemoryCap {
			continue
		}
		if last != nil && t.Tuple == *last {
			continue // as the hop before: most are
		}
		last = &t.Tuple
		if _, named := f.Direction(t.Tuple); named {
			continue
		}
		m[t.Tuple] = natEntry{dir, flow}
		m[t.Tuple.Reverse()] = natEntry{back, flow}
	}
}

func oriented(d trace.Direction, t trace.Tuple) trace.Tuple {
	if d == trace.Reply {
		return t.Reverse()
	}
	return t
}

func isTransmit(k trace.Kind) bool { return k == trace.KindQueue || k == trace.KindXmit }

// untracedFree is the note on a packet whose sk_buff was freed where no tracepoint looks.
const untracedFree = "freed where no tracepoint sees (its sk_buff was reused): taken as delivered, since the kernel reports drops"

// fate decides how the packet ended; end is the hop that freed it, nil if none was seen.
// reused says the sk_buff was seen carrying a new packet: this one was freed unseen.
func fate(hops []trace.Hop, end *trace.Hop, reused bool) trace.Fate {
	endAt := len(hops) - 1
	if end != nil {
		endAt = indexOf(hops, end)
		if end.Event == trace.KindDrop {
			return trace.Fate{
				Outcome:  trace.Dropped,
				Reason:   end.Reason,
				Location: end.Location,
				Place:    placeAt(hops, endAt),
			}
		}
	}

	rx, tx := -1, -1
	for i := range hops {
		switch {
		case hops[i].Event == trace.KindReceive:
			rx = i
		case isTransmit(hops[i].Event):
			tx = i
		}
	}
	// Sent after its last arrival and then freed, or never seen again: it went out of a
	// device. A veth transmit is always followed by a receive on its peer, so only a real
	// uplink ends a packet this way.
	if tx > rx {
		h := hops[tx]
		return trace.Fate{Outcome: trace.LeftHost, Place: trace.Place{Ifname: h.Ifname, Netns: h.Netns, NetnsName: h.NetnsName}}
	}
	if end != nil {
		f := trace.Fate{Outcome: trace.Delivered, Location: end.Location}
		at := endAt
		if rx >= 0 {
			at = rx
		}
		f.Place = placeAt(hops, at)
		return f
	}
	if endAt < 0 {
		return trace.Fate{Outcome: trace.Unknown}
	}
	f := trace.Fate{Outcome: trace.Unknown, Place: placeAt(hops, endAt)}
	if h := &hops[endAt]; h.Copy && neighProbe(h) {
		f.Note = waitingNote + h.Location
	} else if h.Copy && unplacedConsume(h) && len(hops) == 1 {
		f.Note = unplacedNote
	}
	// Freed unseen after the stack took it in: on a kernel with drop reasons a drop goes through
	// kfree_skb, so this is the quiet end of a packet used up (TCP's pure ACKs end so).
	if reused && rx >= 0 {
		f.Outcome, f.Note = trace.Delivered, untracedFree
	}
	return f
}

// indexOf finds the freeing hop among the sorted hops; it is normally the last one.
func indexOf(hops []trace.Hop, end *trace.Hop) int {
	for i := len(hops) - 1; i >= 0; i-- {
		if hops[i].Event == end.Event && hops[i].TimeNS == end.TimeNS {
			return i
		}
	}
	return len(hops) - 1
}

// placeAt is where hop i happened, for a fate: its namespace and its device or, when that
// hop was reported without one (a free after the stack cleared skb->dev, a route lookup), the
// latest device the packet had in that netns. A fate names no ifindex.
func placeAt(hops []trace.Hop, i int) trace.Place {
	if i < 0 {
		return trace.Place{}
	}
	p := trace.Place{Netns: hops[i].Netns, NetnsName: hops[i].NetnsName}
	for j := i; j >= 0; j-- {
		if hops[j].Netns == hops[i].Netns && hops[j].Ifname != "" {
			p.Ifname = hops[j].Ifname
			break
		}
	}
	return p
}
