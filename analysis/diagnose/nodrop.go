package diagnose

import (
	"fmt"

	"github.com/pathtrace/pathtrace/trace"
)

// tally is what a verdict without a drop rests on: every packet observed is counted, so that
// a run which does not hold its packets (past --max-packets, or streamed to its trace file as
// they complete) is concluded on all of them.
type tally struct {
	packets, req, rep, delivered, unknown, ended int
	// left is the request that left the host last (a reply, if no request did), with only
	// the hops leftHostVerdict reads (in leftHops): the packet's own go on to later packets.
	left     trace.Packet
	leftHops [3]trace.Hop
	// leftInAt is the index in left.Hops of the hop that received it in the namespace it
	// left from (for the route that chose its exit), -1 if none.
	leftInAt int
	hasLeft  bool
	// waiting counts the packets last seen queued for their next hop's address (the neighbour
	// code's probe copy freed, the packet itself never seen again); wait is the first of them,
	// its lastNS the latest's. lastReplyNS is when the latest reply was last seen.
	waiting     int
	wait        waitInfo
	lastReplyNS uint64
	// resent counts the requests sent again (TCP retransmissions) after the latest reply.
	resent       int
	lastResendNS uint64
}

func (c *tally) add(p trace.Packet) {
	c.packets++
	var lastNS uint64
	if n := len(p.Hops); n > 0 {
		lastNS = p.Hops[n-1].TimeNS
	}
	if p.Flow == trace.Reply {
		c.rep++
		c.lastReplyNS = max(c.lastReplyNS, lastNS)
		if lastNS > c.lastResendNS {
			c.resent = 0
		}
	} else {
		c.req++
		if p.RetransmitOf != 0 && lastNS >= c.lastReplyNS {
			c.resent++
			c.lastResendNS = max(c.lastResendNS, lastNS)
		}
	}
	if w, ok := waitingAt(&p); ok {
		if c.waiting == 0 {
			c.wait = w
		}
		c.waiting++
		c.wait.lastNS = max(c.wait.lastNS, w.lastNS)
	}
	switch p.Fate.Outcome {
	case trace.LeftHost:
		if !c.hasLeft || p.Flow == trace.Request {
			c.left, c.hasLeft = p, true
			c.left.Hops = c.leftHops[:0]
			first, egress := firstHeadersAt(p), egressAt(p)
			if first >= 0 && first != egress {
				c.left.Hops = append(c.left.Hops, p.Hops[first])
			}
			c.leftInAt = -1
			if in := receivedBefore(p, egress); in >= 0 && in != first {
				c.leftInAt = len(c.left.Hops)
				c.left.Hops = append(c.left.Hops, p.Hops[in])
			} else if in >= 0 {
				c.leftInAt = 0
			}
			if egress >= 0 {
				c.left.Hops = append(c.left.Hops, p.Hops[egress])
			}
		}
	case trace.Delivered:
		c.delivered++
	case trace.Dropped:
		c.ended++ // benign: a closing socket's queue, a flooded clone
	default:
		c.unknown++
	}
}

// The classes below tell a flow with no drop by the packets' fates. A class that reads more
// (a packet waiting for a neighbour, a loop) comes before them in the catalogue's order.

var _ = register(Class{
	Name:       "left-host",
	Order:      900,
	Recognises: "requests that left the host on the wire, no reply seen",
	Reads:      "the egress device and the source address on the wire; live: the route that chose the device, and the connected route of another device it overrides (a wrong exit)",
	Fix:        "SNAT applied: look beyond this host; SNAT missing: the MASQUERADE rule; a wrong exit: `ip route del` of the overriding route",
	Conclude: func(d *Diagnoser, t *trace.Trace, c *tally) (trace.Verdict, bool) {
		if !c.hasLeft || c.rep > 0 {
			return trace.Verdict{}, false
		}
		v := leftHostVerdict(t, c.left)
		d.nameExitRoute(&v, c) // class_route.go
		return v, true
	},
})

var _ = register(Class{
	Name:       "resent-unanswered",
	Order:      850,
	Recognises: "requests resent (TCP retransmissions) after the last reply, none answered",
	Reads:      "the packets' fates and retransmissions",
	Fix:        "where the resent requests went: beyond the host (the peer), or the local socket",
	Conclude: func(_ *Diagnoser, t *trace.Trace, c *tally) (trace.Verdict, bool) {
		if c.rep == 0 || c.resent == 0 {
			return trace.Verdict{}, false
		}
		head := fmt.Sprintf("%d request segment(s) resent after the last reply, none answered while tracing: the flow stopped getting answers", c.resent)
		if c.hasLeft && c.left.Flow == trace.Request {
			v := leftHostVerdict(t, c.left)
			v.Summary = head + "; " + v.Summary
			v.Cause = "resent, no reply"
			return v, true
		}
		return trace.Verdict{
			Outcome:    "unknown",
			Cause:      "resent, no reply",
			Summary:    head + "; where they ended was not seen",
			Fix:        []string{"trace the peer too (and merge), or check the local socket: ss -tni"},
			Confidence: "low",
		}, true
	},
})

var _ = register(Class{
	Name:       "healthy",
	Order:      910,
	Recognises: "requests and replies, none dropped",
	Reads:      "the packets' fates",
	Fix:        "none",
	Conclude: func(_ *Diagnoser, _ *trace.Trace, c *tally) (trace.Verdict, bool) {
		if c.req == 0 || c.rep == 0 {
			return trace.Verdict{}, false
		}
		if c.unknown == 0 {
			v := trace.Verdict{
				Outcome:    "delivered",
				Summary:    fmt.Sprintf("healthy: %d request and %d reply packets, none dropped on this host", c.req, c.rep),
				Confidence: "high",
			}
			if c.ended > 0 {
				v.Summary += fmt.Sprintf(" (%d freed as a socket closed or as flooded copies: normal)", c.ended)
			}
			return v, true
		}
		return trace.Verdict{
			Outcome: "delivered",
			Summary: fmt.Sprintf("healthy: %d request and %d reply packets, none dropped on this host; %d still in flight or freed unseen when the trace stopped",
				c.req, c.rep, c.unknown),
			Confidence: "medium",
		}, true
	},
})

var _ = register(Class{
	Name:       "no-reply",
	Order:      920,
	Recognises: "requests delivered to a socket or namespace on this host, no reply seen",
	Reads:      "the packets' fates",
	Fix:        "why the destination does not answer (the application, its firewall)",
	Conclude: func(_ *Diagnoser, _ *trace.Trace, c *tally) (trace.Verdict, bool) {
		if c.rep > 0 || c.delivered == 0 {
			return trace.Verdict{}, false
		}
		return trace.Verdict{
			Outcome:    "delivered",
			Cause:      "no reply",
			Summary:    fmt.Sprintf("%d request packets delivered on this host, none dropped; no reply seen while tracing", c.req),
			Fix:        []string{"the destination got the requests: check why it does not answer (the application, its firewall)"},
			Confidence: "medium",
		}, true
	},
})

// concludeNoPackets asks the Conclude classes about a run that saw no packet.
func (d *Diagnoser) concludeNoPackets(t *trace.Trace, c *tally) (trace.Verdict, bool) {
	for _, cl := range Classes() {
		if cl.Conclude == nil {
			continue
		}
		if v, ok := cl.Conclude(d, t, c); ok {
			v.Class = cl.Name
			return v, true
		}
	}
	return trace.Verdict{}, false
}

// noDropVerdict concludes a trace where nothing died on this host: the first class of the
// catalogue that concludes it, or, when none does, that the packets' ends were not seen.
func (d *Diagnoser) noDropVerdict(t *trace.Trace, c *tally) trace.Verdict {
	for _, cl := range Classes() {
		if cl.Conclude == nil {
			continue
		}
		if v, ok := cl.Conclude(d, t, c); ok {
			v.Class = cl.Name
			return v
		}
	}
	return trace.Verdict{
		Outcome:    "unknown",
		Summary:    "no drop seen, but the trace stopped before the packets' ends were seen",
		Unknown:    []trace.NotKnown{{What: "where the packets ended", Settle: "trace longer (--duration) while the traffic flows"}},
		Confidence: "low",
	}
}

// leftHostVerdict: the request left this host and nothing came back (incident 002's "is it
// us?"). The source address it left with tells whether SNAT happened.
func leftHostVerdict(t *trace.Trace, p trace.Packet) trace.Verdict {
	var egress trace.Hop
	if i := egressAt(p); i >= 0 {
		egress = p.Hops[i]
	}
	v := trace.Verdict{Outcome: "left-host", Cause: "no reply"}
	if egress.Tuple == nil {
		v.Summary = fmt.Sprintf("not dropped on this host: the request left on %s and no reply came back while tracing", p.Fate.Ifname)
		v.Confidence = "low"
		return v
	}
	src, dst := egress.Tuple.Src, egress.Tuple.Dst
	v.Evidence = []trace.Evidence{
		{What: "egress device", Value: egress.Place.String(), Source: egress.Probe},
		{What: "source address on the wire", Value: src.String(), Source: egress.Probe},
		{What: "replies seen", Value: "0", Source: "trace"},
	}
	original := p.Tuple.Src
	if first := firstHeaders(p); first != nil {
		original = first.Src
	}
	if src == original && t.Filter.Src.IsValid() && t.Filter.Src.Contains(src) {
		v.Cause = "missing SNAT"
		v.Summary = fmt.Sprintf("not dropped on this host: the request left on %s with its own source address %s (no SNAT/MASQUERADE applied), "+
			"and no reply came back. A reply to %s cannot find its way back from %s if that address is not routed outside the cluster",
			egress.Ifname, src, src, dst)
		v.Fix = []string{
			"check the MASQUERADE/SNAT rule for traffic leaving " + egress.Ifname + ": iptables -t nat -S POSTROUTING, nft list table ip nat",
			"on Kubernetes: ip-masq-agent's nonMasqueradeCIDRs, or the CNI's masquerade setting, must not cover " + dst.String(),
		}
		v.Confidence = "medium"
		return v
	}
	v.Summary = fmt.Sprintf("not dropped on this host: the request left on %s with source %s", egress.Ifname, src)
	if src != original {
		v.Summary += fmt.Sprintf(" (SNAT from %s applied)", original)
	}
	v.Summary += " and no reply came back while tracing: the loss is beyond this host"
	v.Fix = []string{
		"check what lies beyond " + egress.Ifname + ": security groups / firewalls on the path, the remote node or peer (trace there too and merge)",
	}
	v.Confidence = "medium"
	return v
}

// receivedBefore is the index of p's last receive before hop egress in egress's namespace;
// -1 if none.
func receivedBefore(p trace.Packet, egress int) int {
	at := -1
	for i := 0; i >= 0 && i < egress; i++ {
		if h := &p.Hops[i]; h.Event == trace.KindReceive && !h.Copy && h.Netns == p.Hops[egress].Netns {
			at = i
		}
	}
	return at
}

// egressAt is the index of the hop p left on: its last transmit with headers; -1 if none.
func egressAt(p trace.Packet) int {
	at := -1
	for i := range p.Hops {
		if h := &p.Hops[i]; (h.Event == trace.KindQueue || h.Event == trace.KindXmit) && h.Tuple != nil {
			at = i
		}
	}
	return at
}

func firstHeaders(p trace.Packet) *trace.Headers {
	if i := firstHeadersAt(p); i >= 0 {
		return p.Hops[i].Tuple
	}
	return nil
}

// firstHeadersAt is the index of p's first own hop with headers; -1 if none.
func firstHeadersAt(p trace.Packet) int {
	for i := range p.Hops {
		if h := &p.Hops[i]; h.Tuple != nil && !h.Copy {
			return i
		}
	}
	return -1
}
