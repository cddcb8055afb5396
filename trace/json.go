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
func (h *Hop) AppendJSON(b []byte) []byte { return h.appendJSON(b, nil) }

// HopJSON writes hops as Hop.AppendJSON does, remembering the JSON of what hops share: their
// kind (event and probe), their place (namespace and device) and their headers. A live run
// writes every hop of every packet it keeps, and a packet's hops repeat these: written once,
// they are copied for the next hops that have the same. The zero HopJSON is ready to use.
type HopJSON struct {
	kinds   [8]kindJSON
	places  [8]placeJSON
	routes  [4]routeJSON
	headers headersJSON
	next    int // the entry of kinds, places and routes replaced next
	// msDigits are the digits of msNS, the milliseconds of the latest time written: hops
	// follow one another within microseconds.
	msNS     uint64
	msDigits []byte
}

type kindJSON struct {
	event Kind
	probe string
	json  []byte
}

type placeJSON struct {
	netns, ifindex    uint32
	netnsName, ifname string
	json              []byte
}

type routeJSON struct {
	r    Route
	json []byte
}

type headersJSON struct {
	h    Headers
	json []byte
	ok   bool
}

// AppendHopJSON appends the hop's JSON object to b, as Hop.AppendJSON does.
func (c *HopJSON) AppendHopJSON(b []byte, h *Hop) []byte { return h.appendJSON(b, c) }

// AppendHeadJSON appends the packet's head, as Packet.AppendHeadJSON does.
func (c *HopJSON) AppendHeadJSON(b []byte, p *Packet) []byte { return p.appendHeadJSON(b, c) }

// kind appends the hop's event and probe members.
func (c *HopJSON) kind(b []byte, h *Hop) []byte {
	if c == nil {
		return appendKind(b, h)
	}
	for i := range c.kinds {
		if e := &c.kinds[i]; e.event == h.Event && e.probe == h.Probe && e.json != nil {
			return append(b, e.json...)
		}
	}
	n := len(b)
	b = appendKind(b, h)
	e := &c.kinds[c.next%len(c.kinds)]
	e.event, e.probe, e.json = h.Event, h.Probe, append(e.json[:0], b[n:]...)
	c.next++
	return b
}

func appendKind(b []byte, h *Hop) []byte {
	b = member(b, `,"event":`, string(h.Event))
	return member(b, `,"probe":`, h.Probe)
}

// place appends the hop's namespace and device members.
func (c *HopJSON) place(b []byte, h *Hop) []byte {
	if c == nil {
		return appendPlace(b, h)
	}
	for i := range c.places {
		if e := &c.places[i]; e.netns == h.Netns && e.ifindex == h.Ifindex && e.netnsName == h.NetnsName && e.ifname == h.Ifname && e.json != nil {
			return append(b, e.json...)
		}
	}
	n := len(b)
	b = appendPlace(b, h)
	e := &c.places[c.next%len(c.places)]
	e.netns, e.ifindex, e.netnsName, e.ifname = h.Netns, h.Ifindex, h.NetnsName, h.Ifname
	e.json = append(e.json[:0], b[n:]...)
	c.next++
	return b
}

func appendPlace(b []byte, h *Hop) []byte {
	b = strconv.AppendUint(append(b, `,"netns":`...), uint64(h.Netns), 10)
	b = member(b, `,"netns_name":`, h.NetnsName)
	b = uintOmit(b, `,"ifindex":`, uint64(h.Ifindex))
	return strOmit(b, `,"ifname":`, h.Ifname)
}

// route appends the JSON of route r.
func (c *HopJSON) route(b []byte, r *Route) []byte {
	if c == nil {
		return r.appendJSON(b)
	}
	for i := range c.routes {
		if e := &c.routes[i]; e.json != nil && e.r == *r {
			return append(b, e.json...)
		}
	}
	n := len(b)
	b = r.appendJSON(b)
	e := &c.routes[c.next%len(c.routes)]
	e.r, e.json = *r, append(e.json[:0], b[n:]...)
	c.next++
	return b
}

// tuple appends the JSON of headers t.
func (c *HopJSON) tuple(b []byte, t *Headers) []byte {
	if c == nil {
		return t.appendJSON(b)
	}
	e := &c.headers
	if e.ok && e.h == *t {
		return append(b, e.json...)
	}
	n := len(b)
	b = t.appendJSON(b)
	e.h, e.json, e.ok = *t, append(e.json[:0], b[n:]...), true
	return b
}

// The document's members are written in a fixed order, each object's first one always there:
// the keys are constants, with the separator before them.

// timeNS appends ns in decimal.
func (c *HopJSON) timeNS(b []byte, ns uint64) []byte {
	ms, sub := ns/1_000_000, ns%1_000_000
	if c == nil || ms == 0 {
		return strconv.AppendUint(b, ns, 10)
	}
	if ms != c.msNS || c.msDigits == nil {
		c.msNS, c.msDigits = ms, strconv.AppendUint(c.msDigits[:0], ms, 10)
	}
	hi, mid, lo := sub/10000, sub/100%100, sub%100
	return append(append(b, c.msDigits...),
		digitPairs[2*hi], digitPairs[2*hi+1], digitPairs[2*mid], digitPairs[2*mid+1], digitPairs[2*lo], digitPairs[2*lo+1])
}

const digitPairs = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" + "30313233343536373839" +
	"40414243444546474849" + "50515253545556575859" + "60616263646566676869" + "70717273747576777879" +
	"80818283848586878889" + "90919293949596979899"

func (h *Hop) appendJSON(b []byte, c *HopJSON) []byte {
	b = c.timeNS(append(b, `{"time_ns":`...), h.TimeNS)
	b = c.kind(b, h)
	b = c.place(b, h)
	if h.Tuple != nil {
		b = c.tuple(append(b, `,"tuple":`...), h.Tuple)
	}
	b = strOmit(b, `,"encap":`, h.Encap)
	b = uintOmit(b, `,"vni":`, uint64(h.VNI))
	if h.Outer != nil {
		b = h.Outer.appendJSON(append(b, `,"outer":`...))
	}
	b = uintOmit(b, `,"len":`, uint64(h.Len))
	b = strOmit(b, `,"reason":`, h.Reason)
	b = trueOmit(b, `,"reason_inferred":`, h.ReasonInferred)
	b = uintOmit(b, `,"reason_code":`, uint64(h.ReasonCode))
	b = strOmit(b, `,"location":`, h.Location)
	if h.Route != nil {
		b = c.route(append(b, `,"route":`...), h.Route)
	}
	if h.Func != nil {
		b = h.Func.appendJSON(append(b, `,"func":`...))
	}
	b = trueOmit(b, `,"copy":`, h.Copy)
	b = strOmit(b, `,"node":`, h.Node)
	b = strOmit(b, `,"pod":`, h.Pod)
	b = strOmit(b, `,"device_pod":`, h.DevicePod)
	if len(h.Bytes) > 0 {
		b = appendBase64(append(b, `,"bytes":`...), h.Bytes)
	}
	return append(b, '}')
}

// AppendJSON appends the fate's JSON object to b.
func (f *Fate) AppendJSON(b []byte) []byte {
	b = member(b, `{"outcome":`, string(f.Outcome))
	b = strOmit(b, `,"reason":`, f.Reason)
	b = strOmit(b, `,"location":`, f.Location)
	b = strOmit(b, `,"ifname":`, f.Ifname)
	b = uintOmit(b, `,"netns":`, uint64(f.Netns))
	b = strOmit(b, `,"netns_name":`, f.NetnsName)
	b = strOmit(b, `,"note":`, f.Note)
	b = strOmit(b, `,"node":`, f.Node)
	b = strOmit(b, `,"pod":`, f.Pod)
	b = strOmit(b, `,"device_pod":`, f.DevicePod)
	return append(b, '}')
}

// AppendJSON appends the drop site's JSON object to b.
func (d *DropSite) AppendJSON(b []byte) []byte {
	b = member(b, `{"flow":`, string(d.Flow))
	b = member(b, `,"reason":`, d.Reason)
	b = member(b, `,"location":`, d.Location)
	b = strOmit(b, `,"ifname":`, d.Ifname)
	b = strOmit(b, `,"netns_name":`, d.NetnsName)
	b = strOmit(b, `,"node":`, d.Node)
	b = strOmit(b, `,"pod":`, d.Pod)
	b = strOmit(b, `,"device_pod":`, d.DevicePod)
	b = strconv.AppendInt(append(b, `,"count":`...), int64(d.Count), 10)
	return append(b, '}')
}

// AppendHeadJSON appends the packet's JSON object without its closing brace and without its
// hops, which the caller writes after it (one line each, in the document).
func (p *Packet) AppendHeadJSON(b []byte) []byte { return p.appendHeadJSON(b, nil) }

func (p *Packet) appendHeadJSON(b []byte, c *HopJSON) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), int64(p.ID), 10)
	b = member(b, `,"flow":`, string(p.Flow))
	b = c.tuple(append(b, `,"tuple":`...), &p.Tuple)
	b = p.Fate.AppendJSON(append(b, `,"fate":`...))
	b = intOmit(b, `,"copy_of":`, int64(p.CopyOf))
	b = intOmit(b, `,"retransmit_of":`, int64(p.RetransmitOf))
	b = trueOmit(b, `,"incomplete":`, p.Incomplete)
	b = trueOmit(b, `,"from_probe":`, p.FromProbe)
	return b
}

func (t *Headers) appendJSON(b []byte) []byte {
	b = t.Tuple.appendFields(append(b, '{'))
	b = uintOmit(b, `,"ip_id":`, uint64(t.IPID))
	b = uintOmit(b, `,"ttl":`, uint64(t.TTL))
	if t.TCPFlags != 0 {
		b = append(t.TCPFlags.AppendTo(append(b, `,"tcp_flags":"`...)), '"') // names: nothing to escape
	}
	b = uintOmit(b, `,"tcp_seq":`, uint64(t.TCPSeq))
	b = uintOmit(b, `,"icmp_type":`, uint64(t.ICMPType))
	b = uintOmit(b, `,"icmp_code":`, uint64(t.ICMPCode))
	b = uintOmit(b, `,"icmp_id":`, uint64(t.ICMPID))
	b = uintOmit(b, `,"icmp_seq":`, uint64(t.ICMPSeq))
	b = uintOmit(b, `,"payload":`, uint64(t.Payload))
	return append(b, '}')
}

// appendFields writes the tuple's members, the object's opening brace already written.
func (t *Tuple) appendFields(b []byte) []byte {
	b = member(b, `"proto":`, t.Proto.String())
	b = appendAddr(append(b, `,"src":`...), t.Src)
	b = appendAddr(append(b, `,"dst":`...), t.Dst)
	b = uintOmit(b, `,"sport":`, uint64(t.Sport))
	b = uintOmit(b, `,"dport":`, uint64(t.Dport))
	return b
}

func (r *Route) appendJSON(b []byte) []byte {
	b = strconv.AppendUint(append(b, `{"table":`...), uint64(r.Table), 10)
	b = strOmit(b, `,"table_name":`, r.TableName)
	b = strconv.AppendInt(append(b, `,"err":`...), int64(r.Err), 10)
	b = strOmit(b, `,"out_ifname":`, r.OutIfname)
	b = uintOmit(b, `,"out_ifindex":`, uint64(r.OutIndex))
	if r.Gateway != (netip.Addr{}) {
		b = appendAddr(append(b, `,"gateway":`...), r.Gateway)
	}
	b = append(r.Lookup.appendFields(append(b, `,"lookup":{`...)), '}')
	b = uintOmit(b, `,"iif":`, uint64(r.Iif))
	return append(b, '}')
}

func (f *Func) appendJSON(b []byte) []byte {
	b = member(b, `{"name":`, f.Name)
	if f.Ret != nil {
		b = strconv.AppendInt(append(b, `,"ret":`...), int64(*f.Ret), 10)
	}
	b = strOmit(b, `,"hook":`, f.Hook)
	b = strOmit(b, `,"family":`, f.Family)
	b = strOmit(b, `,"verdict":`, f.Verdict)
	return append(b, '}')
}

// member writes key (the separator and `"name":`) and v.
func member(b []byte, key, v string) []byte { return appendString(append(b, key...), v) }

func strOmit(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return member(b, key, v)
}

func uintOmit(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

func intOmit(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), v, 10)
}

func trueOmit(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	return append(append(b, key...), "true"...)
}

// appendAddr writes an address as encoding/json does through its MarshalText: the zero
// address as "".
func appendAddr(b []byte, a netip.Addr) []byte {
	b = append(b, '"')
	b, _ = a.AppendText(b) // never fails
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// plain says whether s is ASCII with no control character, quote or backslash: written as
// it is. It reads 8 bytes at a time, the last 8 overlapping the ones before.
func plain(s string) bool {
	n := len(s)
	if n < 8 {
		for i := 0; i < n; i++ {
			if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	for i := 0; i+8 <= n; i += 8 {
		if !plain8(s, i) {
			return false
		}
	}
	return plain8(s, n-8)
}

// plain8 says whether s[i:i+8] is ASCII with no control character, quote or backslash.
func plain8(s string, i int) bool {
	_ = s[i+7]
	x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	control := (x - 0x20*ones) & ^x & highs // a byte below 0x20 (exact as to whether any is)
	return (control | hasZero(x^'"'*ones) | hasZero(x^'\\'*ones) | x&highs) == 0
}

// appendString writes s as a JSON string the way encoding/json does with HTML escaping off:
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	if plain(s) { // names and locations: the usual case
		return append(append(append(b, '"'), s...), '"')
	}
	b = append(b, '"')
	start, i := 0, 0
	for i < len(s) {
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

// appendBase64 writes bytes as encoding/json does: a string of standard base64.
func appendBase64(b, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}
