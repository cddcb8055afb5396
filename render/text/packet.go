package text

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pathtrace/pathtrace/trace"
)

const hopIndent = "    "

// Packet prints one packet's block: a headline, one line per hop in time order, and its fate.
// A live run prints one for every packet it keeps, so the block is appended into the
// Printer's reused buffers with no string built per hop.
func (p *Printer) Packet(pk trace.Packet) {
	b := p.newBlock()
	from := len(b.txt)
	b.txt = strconv.AppendInt(append(b.txt, '#'), int64(pk.ID), 10)
	b.putTxt(bold, from)
	b.txt = append(append(b.txt, ' '), pk.Flow...)
	for n := utf8.RuneCountInString(string(pk.Flow)); n < 7; n++ {
		b.txt = append(b.txt, ' ')
	}
	b.txt = appendPacketLine(append(b.txt, "  "...), &pk.Tuple)
	switch {
	case pk.CopyOf != 0:
		b.txt = append(strconv.AppendInt(append(b.txt, "  (copy of #"...), int64(pk.CopyOf), 10), ')')
	case pk.RetransmitOf != 0:
		b.txt = append(strconv.AppendInt(append(b.txt, "  (retransmission of #"...), int64(pk.RetransmitOf), 10), ')')
	}
	if pk.FromProbe {
		b.txt = append(b.txt, "  (probe)"...)
	}
	if pk.Incomplete {
		b.txt = append(b.txt, "  (incomplete: some of its hops were lost)"...)
	}
	b.putTxt(plain, from)
	b.nl()

	hops := trace.InTimeOrder(pk.Hops)
	// A merged trace's packet crossed several nodes: each hop says which.
	onNodes := false
	for i := range hops {
		onNodes = onNodes || hops[i].Node != ""
	}
	var prev *trace.Tuple
	for i := range hops {
		h := &hops[i]
		b.row()
		from := len(b.txt)
		b.txt = append(appendMS(append(b.txt, '+'), h.TimeNS-hops[0].TimeNS), "ms"...)
		b.asciiCell(from, plain, true)
		if onNodes {
			b.txtCell(h.Node)
		}
		from = len(b.txt)
		if b.txt = h.AppendNamespace(b.txt); len(b.txt) == from {
			b.txt = append(b.txt, '-')
		}
		b.cell(from, plain, false)
		from = len(b.txt)
		if b.txt = h.AppendDevice(b.txt); len(b.txt) == from {
			b.txt = append(b.txt, '-')
		}
		b.cell(from, plain, false)
		from = len(b.txt)
		var st style
		b.txt, st = appendEventName(b.txt, h)
		if h.Event == trace.KindDrop && !h.Copy && pk.Fate.Outcome != trace.Dropped {
			// The packet's own handler freed it as a drop, yet a copy of it was delivered (ping's
			// raw socket): not where it died, so not shouted.
			b.txt, st = append(b.txt[:from], "dropped"...), warn
		}
		b.cell(from, st, false)

		b.hopDetail(h)
		if h.Encap != "" && h.Outer != nil {
			if b.tailsOf() > 0 {
				b.txtTail("  ")
			}
			from = len(b.txt)
			b.txt = append(append(append(b.txt, "in "...), h.Encap...), ' ')
			if h.VNI != 0 {
				b.txt = append(strconv.AppendUint(append(b.txt, "vni "...), uint64(h.VNI), 10), ' ')
			}
			b.txt = appendEndpoints(b.txt, &h.Outer.Tuple)
			b.tail(from, plain)
		}
		if h.Tuple != nil {
			if prev != nil {
				sep := b.tailsOf() > 0
				at := len(b.txt)
				if sep {
					b.txt = append(b.txt, "  "...)
				}
				from = len(b.txt)
				switch b.txt = appendNAT(b.txt, prev, &h.Tuple.Tuple); {
				case len(b.txt) == from: // no NAT
					b.txt = b.txt[:at]
				case sep:
					b.tails = append(b.tails, tspan{piece: piece{from: at, to: from, width: 2, ascii: true}}) // "  "
					fallthrough
				default:
					b.tail(from, warn)
				}
			}
			prev = &h.Tuple.Tuple
		}
	}
	b.writeTable(hopIndent)
	b.fateLine(&pk, hops)
	b.nl()
	p.flush(b)
}

// appendMS appends ns in milliseconds to three decimals, as fmt's %.3f of float64(ns)/1e6
// would write it. Off a tie (a remainder of exactly 500 ns, left to the float), the float is
// far closer to ns/1e6 than half a microsecond: the rounding of integers is the same.
func appendMS(b []byte, ns uint64) []byte {
	if ns >= 1<<50 || ns%1000 == 500 {
		return strconv.AppendFloat(b, float64(ns)/1e6, 'f', 3, 64)
	}
	us := (ns + 500) / 1000
	b = append(strconv.AppendUint(b, us/1000, 10), '.')
	frac := us % 1000
	return append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// txtCell adds s as a cell, "-" when empty.
func (b *block) txtCell(s string) {
	from := len(b.txt)
	if s == "" {
		s = "-"
	}
	b.txt = append(b.txt, s...)
	b.cell(from, plain, false)
}

func (b *block) txtTail(s string) {
	from := len(b.txt)
	b.txt = append(b.txt, s...)
	b.tail(from, plain)
}

func appendEventName(b []byte, h *trace.Hop) ([]byte, style) {
	switch {
	case h.Event == trace.KindFunc && h.Func != nil && h.Func.Name == "nf_hook_slow":
		return append(b, "netfilter"...), plain
	case h.Event == trace.KindFunc && h.Func != nil:
		return append(b, h.Func.Name...), plain
	case h.Copy:
		// A copy's free says where a socket's clone ended, not where the packet did.
		return append(append(b, "copy "...), h.Event...), plain
	case h.Event == trace.KindDrop:
		return append(b, "DROPPED"...), alarm
	}
	return append(b, h.Event...), plain
}

// hopDetail adds what the hop says beyond where and what, as tails of the row.
func (b *block) hopDetail(h *trace.Hop) {
	from := len(b.txt)
	switch h.Event {
	case trace.KindFunc:
		f := h.Func
		if f == nil {
			return
		}
		if f.Hook != "" || f.Verdict != "" {
			s := strings.TrimSpace(f.Hook + " " + f.Family)
			if f.Verdict == "" {
				b.txtTail(s)
				return
			}
			st := plain
			if f.Verdict == "DROP" {
				st = alarm
			}
			b.txtTail(s + ": ")
			from = len(b.txt)
			b.txt = append(b.txt, f.Verdict...)
			b.tail(from, st)
			return
		}
		if f.Ret != nil {
			b.txt = strconv.AppendInt(append(b.txt, "returned "...), int64(*f.Ret), 10)
			b.tail(from, plain)
		}
	case trace.KindRoute:
		if h.Route == nil {
			return
		}
		var failed bool
		b.txt, failed = appendRouteDetail(b.txt, h.Route)
		if failed {
			b.tail(from, alarm)
			return
		}
		b.tail(from, plain)
	case trace.KindDrop:
		if b.txt = appendReasonAt(b.txt, h.Reason, h.Location); len(b.txt) == from {
			b.txt = append(b.txt, "no drop reason reported"...)
		}
		if h.ReasonInferred {
			b.txt = append(b.txt, " (reason inferred from the location: this kernel reports none)"...)
		}
		if f := h.Func; f != nil && f.Hook != "" {
			b.txt = append(b.txt, "  netfilter "...)
			b.txt = append(b.txt, strings.TrimSpace(f.Hook+" "+f.Family)...)
			b.txt = append(append(b.txt, ": "...), f.Verdict...)
		}
		b.tail(from, plain)
	case trace.KindConsume:
		if h.Location != "" {
			b.txt = append(append(b.txt, "at "...), h.Location...)
			b.tail(from, plain)
		}
	}
}

// fateLine writes the block's last line, the one a reader skims for: "=> DROPPED on node
// veth-pod: IP_INADDRERRORS at ip_error+0x5a".
func (b *block) fateLine(pk *trace.Packet, hops []trace.Hop) {
	f := &pk.Fate
	b.text(hopIndent)
	from := len(b.txt)
	switch f.Outcome {
	case trace.Dropped:
		b.text("=> ")
		b.put(alarm, "DROPPED")
		if f.Node != "" {
			b.txt = append(append(b.txt, " on node "...), f.Node...)
		}
		at := len(b.txt)
		b.txt = f.Place.AppendTo(append(b.txt, " in "...))
		switch {
		case len(b.txt) == at+4: // no place
			b.txt = b.txt[:at]
		case f.Node == "":
			copy(b.txt[at+1:], "on ") // " in " -> " on "
		}
		if f.Reason != "" || f.Location != "" {
			b.txt = appendReasonAt(append(b.txt, ": "...), f.Reason, f.Location)
		}
	case trace.Delivered:
		b.text("=> ")
		b.put(good, "delivered")
		if f.Node != "" {
			b.txt = append(append(b.txt, " on node "...), f.Node...)
		}
		at := len(b.txt)
		if b.txt = f.AppendNamespace(append(b.txt, " in "...)); len(b.txt) == at+4 {
			b.txt = b.txt[:at]
		}
		if f.Location != "" {
			b.txt = append(append(append(b.txt, " (consumed at "...), f.Location...), ')')
		}
		if f.Note != "" {
			b.txt = append(append(append(b.txt, " ("...), f.Note...), ')')
		}
	case trace.LeftHost:
		b.text("=> ")
		if f.Node != "" {
			b.txt = append(append(b.txt, "left node "...), f.Node...)
		} else {
			b.txt = append(b.txt, "left host"...)
		}
		b.putTxt(good, from)
		if f.Ifname != "" {
			b.txt = append(append(b.txt, " on "...), f.Ifname...)
		}
	case trace.Unknown, "":
		b.text("=> ")
		b.put(warn, "unknown")
		if f.Note != "" {
			b.txt = append(append(b.txt, ": "...), f.Note...)
		} else {
			b.txt = append(b.txt, ": trace ended before the packet's end was seen"...)
		}
		if n := len(hops); n > 0 {
			h := &hops[n-1]
			b.txt, _ = appendEventName(append(b.txt, " (last seen: "...), h)
			at := len(b.txt)
			if b.txt = h.AppendTo(append(b.txt, " on "...)); len(b.txt) == at+4 {
				b.txt = b.txt[:at]
			}
			if h.Node != "" {
				b.txt = append(append(b.txt, " on node "...), h.Node...)
			}
			b.txt = append(b.txt, ')')
		}
	default:
		b.txt = append(b.txt, strings.TrimSpace("=> "+string(f.Outcome)+" "+f.Place.String())...)
	}
	b.putTxt(plain, from)
	b.nl()
}

// appendEndpoints appends "src:sport > dst:dport proto" (ports only where the protocol has
// them).
func appendEndpoints(b []byte, t *trace.Tuple) []byte {
	if t.Proto == trace.ProtoTCP || t.Proto == trace.ProtoUDP {
		b = appendAddrPort(b, netip.AddrPortFrom(t.Src, t.Sport))
		b = appendAddrPort(append(b, " > "...), netip.AddrPortFrom(t.Dst, t.Dport))
	} else {
		b = appendIP(b, t.Src)
		b = appendIP(append(b, " > "...), t.Dst)
	}
	return append(append(b, ' '), t.Proto.String()...)
}

// appendIP and appendAddrPort write what netip's String methods would, "invalid IP" and
// "invalid AddrPort" included.
func appendIP(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, "invalid IP"...)
	}
	return a.AppendTo(b)
}

func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.Addr().IsValid() {
		return append(b, "invalid AddrPort"...)
	}
	return a.AppendTo(b)
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
