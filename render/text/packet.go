package text

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

const hopIndent = "    "

// Packet prints one packet's block: a headline, one line per hop in time order, and its fate.
func (p *Printer) Packet(pk trace.Packet) {
	b := p.newBlock()
	head := fmt.Sprintf(" %-7s  %s", pk.Flow, packetLine(pk.Tuple))
	switch {
	case pk.CopyOf != 0:
		head += fmt.Sprintf("  (copy of #%d)", pk.CopyOf)
	case pk.RetransmitOf != 0:
		head += fmt.Sprintf("  (retransmission of #%d)", pk.RetransmitOf)
	}
	if pk.Incomplete {
		head += "  (incomplete: some of its hops were lost)"
	}
	b.line("", styled(bold, "#"+strconv.Itoa(pk.ID)), sp(head))

	hops := trace.InTimeOrder(pk.Hops)
	rows := make([][]cell, len(hops))
	tails := make([][]span, len(hops))
	// A merged trace's packet crossed several nodes: each hop says which.
	onNodes := slices.ContainsFunc(hops, func(h trace.Hop) bool { return h.Node != "" })
	var prev *trace.Tuple
	for i, h := range hops {
		event, evStyle := eventName(h)
		if h.Event == trace.KindDrop && !h.Copy && pk.Fate.Outcome != trace.Dropped {
			// The packet's own handler freed it as a drop, yet a copy of it was delivered (ping's
			// raw socket): not where it died, so not shouted.
			event, evStyle = "dropped", warn
		}
		rows[i] = []cell{
			{s: fmt.Sprintf("+%.3fms", float64(h.TimeNS-hops[0].TimeNS)/1e6), right: true},
			{s: or(h.Namespace(), "-")},
			{s: or(h.Device(), "-")},
			{s: event, st: evStyle},
		}
		if onNodes {
			rows[i] = slices.Insert(rows[i], 1, cell{s: or(h.Node, "-")})
		}
		tails[i] = hopDetail(h)
		if h.Encap != "" && h.Outer != nil {
			if len(tails[i]) > 0 {
				tails[i] = append(tails[i], sp("  "))
			}
			tails[i] = append(tails[i], sp(fmt.Sprintf("in %s %s", h.Encap, endpoints(h.Outer.Tuple))))
		}
		if h.Tuple != nil {
			if prev != nil {
				if n := nat(*prev, h.Tuple.Tuple); n != "" {
					if len(tails[i]) > 0 {
						tails[i] = append(tails[i], sp("  "))
					}
					tails[i] = append(tails[i], styled(warn, n))
				}
			}
			prev = &h.Tuple.Tuple
		}
	}
	b.table(hopIndent, rows, tails)
	b.line(hopIndent, fateLine(pk, hops)...)
	b.nl()
	p.flush(b)
}

func eventName(h trace.Hop) (string, style) {
	switch {
	case h.Event == trace.KindFunc && h.Func != nil && h.Func.Name == "nf_hook_slow":
		return "netfilter", plain
	case h.Event == trace.KindFunc && h.Func != nil:
		return h.Func.Name, plain
	case h.Copy:
		// A copy's free says where a socket's clone ended, not where the packet did.
		return "copy " + string(h.Event), plain
	case h.Event == trace.KindDrop:
		return "DROPPED", alarm
	}
	return string(h.Event), plain
}

func hopDetail(h trace.Hop) []span {
	switch h.Event {
	case trace.KindFunc:
		if h.Func == nil {
			return nil
		}
		if f := h.Func; f.Hook != "" || f.Verdict != "" {
			s := strings.TrimSpace(f.Hook + " " + f.Family)
			if f.Verdict == "" {
				return []span{sp(s)}
			}
			st := plain
			if f.Verdict == "DROP" {
				st = alarm
			}
			return []span{sp(s + ": "), styled(st, f.Verdict)}
		}
		if h.Func.Ret != nil {
			return []span{sp(fmt.Sprintf("returned %d", *h.Func.Ret))}
		}
	case trace.KindRoute:
		if h.Route == nil {
			return nil
		}
		s, failed := routeDetail(*h.Route)
		if failed {
			return []span{styled(alarm, s)}
		}
		return []span{sp(s)}
	case trace.KindDrop:
		d := or(reasonAt(h.Reason, h.Location), "no drop reason reported")
		if h.ReasonInferred {
			d += " (reason inferred from the location: this kernel reports none)"
		}
		if f := h.Func; f != nil && f.Hook != "" {
			d += "  netfilter " + strings.TrimSpace(f.Hook+" "+f.Family) + ": " + f.Verdict
		}
		return []span{sp(d)}
	case trace.KindConsume:
		if h.Location != "" {
			return []span{sp("at " + h.Location)}
		}
	}
	return nil
}

// fateLine is the block's last line, the one a reader skims for: "=> DROPPED on node
// veth-pod: IP_INADDRERRORS at ip_error+0x5a".
func fateLine(pk trace.Packet, hops []trace.Hop) []span {
	f := pk.Fate
	where := f.Place.String()
	node := ""
	if f.Node != "" {
		node = " node " + f.Node
	}
	switch f.Outcome {
	case trace.Dropped:
		s := ""
		switch {
		case node != "" && where != "":
			s = " on" + node + " in " + where
		case node != "":
			s = " on" + node
		case where != "":
			s = " on " + where
		}
		if why := reasonAt(f.Reason, f.Location); why != "" {
			s += ": " + why
		}
		return []span{sp("=> "), styled(alarm, "DROPPED"), sp(s)}
	case trace.Delivered:
		s := ""
		if node != "" {
			s = " on" + node
		}
		if ns := f.Namespace(); ns != "" {
			s += " in " + ns
		}
		if f.Location != "" {
			s += " (consumed at " + f.Location + ")"
		}
		if f.Note != "" {
			s += " (" + f.Note + ")"
		}
		return []span{sp("=> "), styled(good, "delivered"), sp(s)}
	case trace.LeftHost:
		s := ""
		if f.Ifname != "" {
			s = " on " + f.Ifname
		}
		if node != "" {
			return []span{sp("=> "), styled(good, "left"+node), sp(s)}
		}
		return []span{sp("=> "), styled(good, "left host"), sp(s)}
	case trace.Unknown, "":
		s := ": trace ended before the packet's end was seen"
		if n := len(hops); n > 0 {
			h := hops[n-1]
			ev, _ := eventName(h)
			if w := h.Place.String(); w != "" {
				ev += " on " + w
			}
			if h.Node != "" {
				ev += " on node " + h.Node
			}
			s += " (last seen: " + ev + ")"
		}
		return []span{sp("=> "), styled(warn, "unknown"), sp(s)}
	}
	return []span{sp(strings.TrimSpace("=> " + string(f.Outcome) + " " + where))}
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// endpoints is "src:sport > dst:dport" (ports only where the protocol has them).
func endpoints(t trace.Tuple) string {
	if t.Proto == trace.ProtoTCP || t.Proto == trace.ProtoUDP {
		return fmt.Sprintf("%s > %s %s", netip.AddrPortFrom(t.Src, t.Sport), netip.AddrPortFrom(t.Dst, t.Dport), t.Proto)
	}
	return fmt.Sprintf("%s > %s %s", t.Src, t.Dst, t.Proto)
}
