package text

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/pathtrace/pathtrace/trace"
)

// appendAddr appends an address, and "?" for one the kernel did not report, where netip would
// say "invalid IP" and send a reader after a problem that is not there.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, '?')
	}
	return a.AppendTo(b)
}

// endpoint is "10.0.1.2:43210" ("[fd00::2]:443"), or the bare address for protocols whose
// Sport/Dport are not ports (ICMP echo identifiers).
func endpoint(a netip.Addr, port uint16, p trace.Proto) string {
	return string(appendEndpoint(nil, a, port, p))
}

func appendEndpoint(b []byte, a netip.Addr, port uint16, p trace.Proto) []byte {
	if port == 0 || !hasPorts(p) || !a.IsValid() {
		return appendAddr(b, a)
	}
	return netip.AddrPortFrom(a, port).AppendTo(b)
}

func hasPorts(p trace.Proto) bool { return p == trace.ProtoTCP || p == trace.ProtoUDP }

func isICMP(p trace.Proto) bool { return p == trace.ProtoICMP || p == trace.ProtoICMPv6 }

// protoName is "icmp", "tcp"..., or "proto 47" where a bare number would read as a count.
func protoName(p trace.Proto) string { return string(appendProtoName(nil, p)) }

func appendProtoName(b []byte, p trace.Proto) []byte {
	s := p.String() // a name, "any", or the number
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		b = append(b, "proto "...)
	}
	return append(b, s...)
}

// flowName is how the summary names a flow: "icmp 10.0.1.2 <-> 10.0.2.2", with ports for
// TCP/UDP and the echo identifier for ICMP, which is what tells two pings apart.
func flowName(t trace.Tuple) string {
	s := fmt.Sprintf("%s %s <-> %s", protoName(t.Proto), endpoint(t.Src, t.Sport, t.Proto), endpoint(t.Dst, t.Dport, t.Proto))
	if isICMP(t.Proto) && t.Sport != 0 {
		s += " id=" + strconv.Itoa(int(t.Sport))
	}
	return s
}

// appendPacketLine appends the headline of a packet block after its id and direction:
// "icmp 10.0.1.2 > 10.0.2.2  echo-request id=4660 seq=1".
func appendPacketLine(b []byte, h *trace.Headers) []byte {
	b = appendProtoName(b, h.Proto)
	b = appendEndpoint(append(b, ' '), h.Src, h.Sport, h.Proto)
	b = appendEndpoint(append(b, " > "...), h.Dst, h.Dport, h.Proto)
	switch {
	case isICMP(h.Proto):
		b = appendICMPName(append(b, "  "...), h)
	case h.Proto == trace.ProtoTCP:
		sep := "  "
		if h.TCPFlags != 0 {
			b = append(append(b, sep...), '[')
			b = append(h.TCPFlags.AppendTo(b), ']')
			sep = " "
		}
		if h.TCPSeq != 0 {
			b = strconv.AppendUint(append(append(b, sep...), "seq="...), uint64(h.TCPSeq), 10)
		}
	}
	return b
}

var icmpTypes = map[trace.Proto]map[uint8]string{
	trace.ProtoICMP: {0: "echo-reply", 3: "dest-unreachable", 5: "redirect", 8: "echo-request",
		11: "time-exceeded", 12: "parameter-problem"},
	trace.ProtoICMPv6: {1: "dest-unreachable", 2: "packet-too-big", 3: "time-exceeded",
		4: "parameter-problem", 128: "echo-request", 129: "echo-reply", 133: "router-solicit",
		134: "router-advert", 135: "neighbor-solicit", 136: "neighbor-advert", 137: "redirect"},
}

// ICMPv4 destination-unreachable codes: the code is the whole message of these packets.
var unreachCodes = map[uint8]string{0: "net-unreachable", 1: "host-unreachable", 2: "protocol-unreachable",
	3: "port-unreachable", 4: "frag-needed", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}

func appendICMPName(b []byte, h *trace.Headers) []byte {
	name, ok := icmpTypes[h.Proto][h.ICMPType]
	if !ok {
		b = strconv.AppendUint(append(b, "type="...), uint64(h.ICMPType), 10)
		return strconv.AppendUint(append(b, " code="...), uint64(h.ICMPCode), 10)
	}
	switch name {
	case "echo-request", "echo-reply":
		b = strconv.AppendUint(append(append(b, name...), " id="...), uint64(h.ICMPID), 10)
		return strconv.AppendUint(append(b, " seq="...), uint64(h.ICMPSeq), 10)
	}
	if h.Proto == trace.ProtoICMP && h.ICMPType == 3 {
		if c, ok := unreachCodes[h.ICMPCode]; ok {
			return append(append(append(b, name...), ' '), c...)
		}
	}
	b = append(b, name...)
	if h.ICMPCode != 0 {
		b = strconv.AppendUint(append(b, " code="...), uint64(h.ICMPCode), 10)
	}
	return b
}

// reasonAt is "IP_INADDRERRORS at ip_error+0x5a".
func reasonAt(reason, location string) string {
	switch {
	case reason != "" && location != "":
		return reason + " at " + location
	case location != "":
		return "at " + location
	}
	return reason
}

func appendReasonAt(b []byte, reason, location string) []byte {
	switch {
	case reason != "" && location != "":
		return append(append(append(b, reason...), " at "...), location...)
	case location != "":
		return append(append(b, "at "...), location...)
	}
	return append(b, reason...)
}

// Route table ids every Linux host has; others print as their number.
var tableNames = map[uint32]string{253: "default", 254: "main", 255: "local"}

func appendTableName(b []byte, r *trace.Route) []byte {
	if r.TableName != "" {
		return append(b, r.TableName...)
	}
	if n, ok := tableNames[r.Table]; ok {
		return append(b, n...)
	}
	return strconv.AppendUint(b, uint64(r.Table), 10)
}

// appendRouteDetail appends "table main -> veth-ext via 10.0.2.2", or for a failed lookup
// "table main: -113 EHOSTUNREACH (unreachable route)", and says whether it failed.
func appendRouteDetail(b []byte, r *trace.Route) ([]byte, bool) {
	b = appendTableName(append(b, "table "...), r)
	if r.Err != 0 {
		return appendFibError(append(b, ": "...), r.Err), true
	}
	if r.OutIfname != "" || r.OutIndex != 0 {
		out := trace.Place{Ifname: r.OutIfname, Ifindex: r.OutIndex}
		b = out.AppendDevice(append(b, " -> "...))
	}
	if r.Gateway.IsValid() {
		b = r.Gateway.AppendTo(append(b, " via "...))
	}
	return b, false
}

// What fib_table_lookup's errors mean for the packet (net/ipv4/fib_semantics.c fib_props and
// fib_trie.c). The numbers are Linux's: a trace may be shown on another system.
var fibErrors = map[int32]string{
	11:  "no route in this table, lookup goes on to the next rule", // EAGAIN
	13:  "prohibit route",                                          // EACCES
	22:  "blackhole route",                                         // EINVAL
	101: "network unreachable",                                     // ENETUNREACH
	113: "unreachable route",                                       // EHOSTUNREACH
}

func appendFibError(b []byte, err int32) []byte {
	n := err
	if n < 0 {
		n = -n
	}
	b = strconv.AppendInt(b, int64(err), 10)
	if name := errnoName(n); name != "" {
		b = append(append(b, ' '), name...)
	}
	if m, ok := fibErrors[n]; ok {
		b = append(append(append(b, " ("...), m...), ')')
	}
	return b
}

// appendNAT appends how a hop's headers differ from the previous hop's: "NAT src 10.0.1.2 ->
// 10.0.2.1", ports included when they changed; nothing when they do not. TTL and IP id changes
// are routing, not NAT, and a protocol change is encapsulation, which this does not try to
// describe.
func appendNAT(b []byte, prev, cur *trace.Tuple) []byte {
	if prev.Proto != cur.Proto {
		return b
	}
	start := len(b)
	b = append(b, "NAT "...)
	parts := 0
	change := func(what string) {
		if parts > 0 {
			b = append(b, ", "...)
		}
		parts++
		b = append(append(b, what...), ' ')
	}
	if hasPorts(cur.Proto) {
		if prev.Src != cur.Src || prev.Sport != cur.Sport {
			change("src")
			b = appendEndpoint(b, prev.Src, prev.Sport, cur.Proto)
			b = appendEndpoint(append(b, " -> "...), cur.Src, cur.Sport, cur.Proto)
		}
		if prev.Dst != cur.Dst || prev.Dport != cur.Dport {
			change("dst")
			b = appendEndpoint(b, prev.Dst, prev.Dport, cur.Proto)
			b = appendEndpoint(append(b, " -> "...), cur.Dst, cur.Dport, cur.Proto)
		}
	} else {
		if prev.Src != cur.Src {
			change("src")
			b = appendAddr(append(appendAddr(b, prev.Src), " -> "...), cur.Src)
		}
		if prev.Dst != cur.Dst {
			change("dst")
			b = appendAddr(append(appendAddr(b, prev.Dst), " -> "...), cur.Dst)
		}
		// ICMP echo carries its identifier in both Sport and Dport; NAT may rewrite it.
		if prev.Sport != cur.Sport {
			change("id")
			b = strconv.AppendUint(b, uint64(prev.Sport), 10)
			b = strconv.AppendUint(append(b, " -> "...), uint64(cur.Sport), 10)
		}
	}
	if parts == 0 {
		return b[:start]
	}
	return b
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
