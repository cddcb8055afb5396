package text

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// addr prints an address, and "?" for one the kernel did not report, where netip would say
// "invalid IP" and send a reader after a problem that is not there.
func addr(a netip.Addr) string {
	if !a.IsValid() {
		return "?"
	}
	return a.String()
}

// endpoint is "10.0.1.2:43210" ("[fd00::2]:443"), or the bare address for protocols whose
// Sport/Dport are not ports (ICMP echo identifiers).
func endpoint(a netip.Addr, port uint16, p trace.Proto) string {
	if port == 0 || !hasPorts(p) || !a.IsValid() {
		return addr(a)
	}
	return netip.AddrPortFrom(a, port).String()
}

func hasPorts(p trace.Proto) bool { return p == trace.ProtoTCP || p == trace.ProtoUDP }

func isICMP(p trace.Proto) bool { return p == trace.ProtoICMP || p == trace.ProtoICMPv6 }

// protoName is "icmp", "tcp"..., or "proto 47" where a bare number would read as a count.
func protoName(p trace.Proto) string {
	s := p.String()
	if _, err := strconv.Atoi(s); err == nil {
		return "proto " + s
	}
	return s
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

// packetLine is the headline of a packet block after its id and direction:
// "icmp 10.0.1.2 > 10.0.2.2  echo-request id=4660 seq=1".
func packetLine(h trace.Headers) string {
	s := fmt.Sprintf("%s %s > %s", protoName(h.Proto), endpoint(h.Src, h.Sport, h.Proto), endpoint(h.Dst, h.Dport, h.Proto))
	var extra []string
	switch {
	case isICMP(h.Proto):
		extra = append(extra, icmpName(h))
	case h.Proto == trace.ProtoTCP:
		if h.TCPFlags != 0 {
			extra = append(extra, "["+h.TCPFlags.String()+"]")
		}
		if h.TCPSeq != 0 {
			extra = append(extra, "seq="+strconv.FormatUint(uint64(h.TCPSeq), 10))
		}
	}
	if len(extra) > 0 {
		s += "  " + strings.Join(extra, " ")
	}
	return s
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

func icmpName(h trace.Headers) string {
	name, ok := icmpTypes[h.Proto][h.ICMPType]
	if !ok {
		return fmt.Sprintf("type=%d code=%d", h.ICMPType, h.ICMPCode)
	}
	switch name {
	case "echo-request", "echo-reply":
		return fmt.Sprintf("%s id=%d seq=%d", name, h.ICMPID, h.ICMPSeq)
	}
	if h.Proto == trace.ProtoICMP && h.ICMPType == 3 {
		if c, ok := unreachCodes[h.ICMPCode]; ok {
			return name + " " + c
		}
	}
	if h.ICMPCode != 0 {
		return fmt.Sprintf("%s code=%d", name, h.ICMPCode)
	}
	return name
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

// Route table ids every Linux host has; others print as their number.
var tableNames = map[uint32]string{253: "default", 254: "main", 255: "local"}

func tableName(r trace.Route) string {
	if r.TableName != "" {
		return r.TableName
	}
	if n, ok := tableNames[r.Table]; ok {
		return n
	}
	return strconv.FormatUint(uint64(r.Table), 10)
}

// routeDetail is "table main -> veth-ext via 10.0.2.2", or for a failed lookup
// "table main: -113 EHOSTUNREACH (unreachable route)", and whether it failed.
func routeDetail(r trace.Route) (string, bool) {
	s := "table " + tableName(r)
	if r.Err != 0 {
		return s + ": " + fibError(r.Err), true
	}
	if out := (trace.Place{Ifname: r.OutIfname, Ifindex: r.OutIndex}).Device(); out != "" {
		s += " -> " + out
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s, false
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

func fibError(err int32) string {
	n := err
	if n < 0 {
		n = -n
	}
	s := strconv.Itoa(int(err))
	if name := errnoName(n); name != "" {
		s += " " + name
	}
	if m, ok := fibErrors[n]; ok {
		s += " (" + m + ")"
	}
	return s
}

// nat describes how a hop's headers differ from the previous hop's: "NAT src 10.0.1.2 ->
// 10.0.2.1", ports included when they changed. TTL and IP id changes are routing, not NAT,
// and a protocol change is encapsulation, which this does not try to describe.
func nat(prev, cur trace.Tuple) string {
	if prev.Proto != cur.Proto {
		return ""
	}
	var parts []string
	change := func(what, from, to string) {
		parts = append(parts, what+" "+from+" -> "+to)
	}
	if hasPorts(cur.Proto) {
		if prev.Src != cur.Src || prev.Sport != cur.Sport {
			change("src", endpoint(prev.Src, prev.Sport, cur.Proto), endpoint(cur.Src, cur.Sport, cur.Proto))
		}
		if prev.Dst != cur.Dst || prev.Dport != cur.Dport {
			change("dst", endpoint(prev.Dst, prev.Dport, cur.Proto), endpoint(cur.Dst, cur.Dport, cur.Proto))
		}
	} else {
		if prev.Src != cur.Src {
			change("src", addr(prev.Src), addr(cur.Src))
		}
		if prev.Dst != cur.Dst {
			change("dst", addr(prev.Dst), addr(cur.Dst))
		}
		// ICMP echo carries its identifier in both Sport and Dport; NAT may rewrite it.
		if prev.Sport != cur.Sport {
			change("id", strconv.Itoa(int(prev.Sport)), strconv.Itoa(int(cur.Sport)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "NAT " + strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
