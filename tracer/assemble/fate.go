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

// direction says which way the packet went. The first headers decide unless they match
// neither way: a packet tracked across NAT may start with headers the filter never named, and a
// later hop shows the ones it did.
func direction(f trace.Filter, hops []trace.Hop) trace.Direction {
	first := firstTuple(hops)
	if d, _, ok := matched(f, first, hops); ok {
		return d
	}
	return trace.Request
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

func oriented(d trace.Direction, t trace.Tuple) trace.Tuple {
	if d == trace.Reply {
		return t.Reverse()
	}
	return t
}

func isTransmit(k trace.Kind) bool { return k == trace.KindQueue || k == trace.KindXmit }

// fate decides how the packet ended; end is the hop that freed it, nil if none was seen.
func fate(hops []trace.Hop, end *trace.Hop) trace.Fate {
	endAt := len(hops) - 1
	if end != nil {
		endAt = indexOf(hops, end)
		if end.Event == trace.KindDrop {
			return trace.Fate{
				Outcome:   trace.Dropped,
				Reason:    end.Reason,
				Location:  end.Location,
				Ifname:    ifnameAt(hops, endAt),
				Netns:     end.Netns,
				NetnsName: end.NetnsName,
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
		return trace.Fate{Outcome: trace.LeftHost, Ifname: h.Ifname, Netns: h.Netns, NetnsName: h.NetnsName}
	}
	if end != nil {
		f := trace.Fate{Outcome: trace.Delivered, Location: end.Location}
		at := endAt
		if rx >= 0 {
			at = rx
		}
		f.Ifname, f.Netns, f.NetnsName = ifnameAt(hops, at), hops[at].Netns, hops[at].NetnsName
		return f
	}
	if endAt < 0 {
		return trace.Fate{Outcome: trace.Unknown}
	}
	h := hops[endAt]
	return trace.Fate{Outcome: trace.Unknown, Ifname: ifnameAt(hops, endAt), Netns: h.Netns, NetnsName: h.NetnsName}
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

// ifnameAt is hop i's device or, when that hop was reported without one (a free after the
// stack cleared skb->dev, a route lookup), the latest device the packet had in that netns.
func ifnameAt(hops []trace.Hop, i int) string {
	if i < 0 {
		return ""
	}
	for j := i; j >= 0; j-- {
		if hops[j].Netns == hops[i].Netns && hops[j].Ifname != "" {
			return hops[j].Ifname
		}
	}
	return ""
}
