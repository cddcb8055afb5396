package trace

import (
	"encoding/base64"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// The hop, the fate, the drop site and a packet's head are written by hand, for two reasons:
// a Place is embedded in each, yet the document names its fields in the order, and with the
// omissions, pathtrace/v1 has always had (encoding/json would write an embedded struct's
// fields together, in one order for all three); and a live run writes every kept packet, so
// the writer is on its hot path. The output is what encoding/json would write for the v1
// field order, with HTML left unescaped (json_test.go holds it to that).

// MarshalJSON writes the hop as the document has it.
func (h Hop) MarshalJSON() ([]byte, error) { return h.AppendJSON(nil), nil }

// MarshalJSON writes the fate as the document has it.
func (f Fate) MarshalJSON() ([]byte, error) { return f.AppendJSON(nil), nil }

// MarshalJSON writes the drop site as the document has it.
func (d DropSite) MarshalJSON() ([]byte, error) { return d.AppendJSON(nil), nil }

// AppendJSON appends the hop's JSON object to b.
func (h *Hop) AppendJSON(b []byte) []byte {
	var o object
	b = o.uint(b, "time_ns", h.TimeNS)
	b = o.str(b, "event", string(h.Event))
	b = o.str(b, "probe", h.Probe)
	b = o.uint(b, "netns", uint64(h.Netns))
	b = o.str(b, "netns_name", h.NetnsName)
	b = o.uintOmit(b, "ifindex", uint64(h.Ifindex))
	b = o.strOmit(b, "ifname", h.Ifname)
	if h.Tuple != nil {
		b = h.Tuple.appendJSON(o.key(b, "tuple"))
	}
	b = o.strOmit(b, "encap", h.Encap)
	if h.Outer != nil {
		b = h.Outer.appendJSON(o.key(b, "outer"))
	}
	b = o.uintOmit(b, "len", uint64(h.Len))
	b = o.strOmit(b, "reason", h.Reason)
	b = o.trueOmit(b, "reason_inferred", h.ReasonInferred)
	b = o.uintOmit(b, "reason_code", uint64(h.ReasonCode))
	b = o.strOmit(b, "location", h.Location)
	if h.Route != nil {
		b = h.Route.appendJSON(o.key(b, "route"))
	}
	if h.Func != nil {
		b = h.Func.appendJSON(o.key(b, "func"))
	}
	b = o.trueOmit(b, "copy", h.Copy)
	b = o.strOmit(b, "node", h.Node)
	b = o.strOmit(b, "pod", h.Pod)
	b = o.strOmit(b, "device_pod", h.DevicePod)
	if len(h.Bytes) > 0 {
		b = appendBase64(o.key(b, "bytes"), h.Bytes)
	}
	return o.end(b)
}

// appendBase64 writes bytes as encoding/json does: a string of standard base64.
func appendBase64(b, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// AppendJSON appends the fate's JSON object to b.
func (f *Fate) AppendJSON(b []byte) []byte {
	var o object
	b = o.str(b, "outcome", string(f.Outcome))
	b = o.strOmit(b, "reason", f.Reason)
	b = o.strOmit(b, "location", f.Location)
	b = o.strOmit(b, "ifname", f.Ifname)
	b = o.uintOmit(b, "netns", uint64(f.Netns))
	b = o.strOmit(b, "netns_name", f.NetnsName)
	b = o.strOmit(b, "note", f.Note)
	b = o.strOmit(b, "node", f.Node)
	b = o.strOmit(b, "pod", f.Pod)
	b = o.strOmit(b, "device_pod", f.DevicePod)
	return o.end(b)
}

// AppendJSON appends the drop site's JSON object to b.
func (d *DropSite) AppendJSON(b []byte) []byte {
	var o object
	b = o.str(b, "flow", string(d.Flow))
	b = o.str(b, "reason", d.Reason)
	b = o.str(b, "location", d.Location)
	b = o.strOmit(b, "ifname", d.Ifname)
	b = o.strOmit(b, "netns_name", d.NetnsName)
	b = o.strOmit(b, "node", d.Node)
	b = o.strOmit(b, "pod", d.Pod)
	b = o.strOmit(b, "device_pod", d.DevicePod)
	b = o.int(b, "count", int64(d.Count))
	return o.end(b)
}

// AppendHeadJSON appends the packet's JSON object without its closing brace and without its
// hops, which the caller writes after it (one line each, in the document).
func (p *Packet) AppendHeadJSON(b []byte) []byte {
	var o object
	b = o.int(b, "id", int64(p.ID))
	b = o.str(b, "flow", string(p.Flow))
	b = p.Tuple.appendJSON(o.key(b, "tuple"))
	b = p.Fate.AppendJSON(o.key(b, "fate"))
	b = o.intOmit(b, "copy_of", int64(p.CopyOf))
	b = o.intOmit(b, "retransmit_of", int64(p.RetransmitOf))
	b = o.trueOmit(b, "incomplete", p.Incomplete)
	return b
}

func (t *Headers) appendJSON(b []byte) []byte {
	var o object
	b = t.Tuple.appendFields(&o, b)
	b = o.uintOmit(b, "ip_id", uint64(t.IPID))
	b = o.uintOmit(b, "ttl", uint64(t.TTL))
	if t.TCPFlags != 0 {
		b = appendString(o.key(b, "tcp_flags"), t.TCPFlags.String())
	}
	b = o.uintOmit(b, "tcp_seq", uint64(t.TCPSeq))
	b = o.uintOmit(b, "icmp_type", uint64(t.ICMPType))
	b = o.uintOmit(b, "icmp_code", uint64(t.ICMPCode))
	b = o.uintOmit(b, "icmp_id", uint64(t.ICMPID))
	b = o.uintOmit(b, "icmp_seq", uint64(t.ICMPSeq))
	b = o.uintOmit(b, "payload", uint64(t.Payload))
	return o.end(b)
}

func (t *Tuple) appendFields(o *object, b []byte) []byte {
	b = o.str(b, "proto", t.Proto.String())
	b = appendAddr(o.key(b, "src"), t.Src)
	b = appendAddr(o.key(b, "dst"), t.Dst)
	b = o.uintOmit(b, "sport", uint64(t.Sport))
	b = o.uintOmit(b, "dport", uint64(t.Dport))
	return b
}

func (r *Route) appendJSON(b []byte) []byte {
	var o object
	b = o.uint(b, "table", uint64(r.Table))
	b = o.strOmit(b, "table_name", r.TableName)
	b = o.int(b, "err", int64(r.Err))
	b = o.strOmit(b, "out_ifname", r.OutIfname)
	b = o.uintOmit(b, "out_ifindex", uint64(r.OutIndex))
	if r.Gateway != (netip.Addr{}) {
		b = appendAddr(o.key(b, "gateway"), r.Gateway)
	}
	var lookup object
	b = r.Lookup.appendFields(&lookup, o.key(b, "lookup"))
	b = lookup.end(b)
	b = o.uintOmit(b, "iif", uint64(r.Iif))
	return o.end(b)
}

func (f *Func) appendJSON(b []byte) []byte {
	var o object
	b = o.str(b, "name", f.Name)
	if f.Ret != nil {
		b = strconv.AppendInt(o.key(b, "ret"), int64(*f.Ret), 10)
	}
	b = o.strOmit(b, "hook", f.Hook)
	b = o.strOmit(b, "family", f.Family)
	b = o.strOmit(b, "verdict", f.Verdict)
	return o.end(b)
}

// object writes one JSON object's members: the brace before the first, commas between.
type object struct{ open bool }

// key writes the separator and `"name":`. Names are ASCII identifiers: no escaping needed.
func (o *object) key(b []byte, name string) []byte {
	if o.open {
		b = append(b, ',')
	} else {
		b = append(b, '{')
		o.open = true
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// end closes the object ("{}" when it had no member).
func (o *object) end(b []byte) []byte {
	if !o.open {
		b = append(b, '{')
	}
	return append(b, '}')
}

func (o *object) str(b []byte, name, v string) []byte { return appendString(o.key(b, name), v) }

func (o *object) strOmit(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return o.str(b, name, v)
}

func (o *object) uint(b []byte, name string, v uint64) []byte {
	return strconv.AppendUint(o.key(b, name), v, 10)
}

func (o *object) uintOmit(b []byte, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return o.uint(b, name, v)
}

func (o *object) int(b []byte, name string, v int64) []byte {
	return strconv.AppendInt(o.key(b, name), v, 10)
}

func (o *object) intOmit(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	return o.int(b, name, v)
}

func (o *object) trueOmit(b []byte, name string, v bool) []byte {
	if !v {
		return b
	}
	return append(o.key(b, name), "true"...)
}

// appendAddr writes an address as encoding/json does through its MarshalText: the zero
// address as "".
func appendAddr(b []byte, a netip.Addr) []byte {
	b = append(b, '"')
	b, _ = a.AppendText(b) // never fails
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does with HTML escaping off:
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
