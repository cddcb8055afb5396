// Package journey holds what the postmortem renderers (render/pcapng, render/svg) say about a
// packet's journey in a few words: where a hop was, the NAT it went through, the route it
// took and how it ended.
package journey

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// Interface names a device as the capture's interfaces are named: "pod default/web eth0",
// "host cali1a2b", "node-b: host eth0" in a merged trace. Without a device, the namespace.
func Interface(p trace.Place) string {
	dev := p.Ifname
	if dev == "" && p.Ifindex != 0 {
		dev = "ifindex:" + strconv.FormatUint(uint64(p.Ifindex), 10)
	}
	s := strings.TrimSpace(p.Namespace() + " " + dev)
	if s == "" {
		s = "unknown"
	}
	if p.Node != "" {
		s = p.Node + ": " + s
	}
	return s
}

// Event is a hop's event in one word or two: "received", "DROPPED", "ip_forward",
// "netfilter FORWARD ACCEPT", "copy consumed". A drop is shouted only where the packet died
// (fate is its packet's outcome): ping's raw socket gets a copy, and the packet's own handler
// freeing it as a drop is no death.
func Event(h trace.Hop, fate trace.Outcome) string {
	switch {
	case h.Event == trace.KindFunc && h.Func != nil && h.Func.Name == "nf_hook_slow":
		return strings.Join(strings.Fields("netfilter "+h.Func.Hook+" "+h.Func.Verdict), " ")
	case h.Event == trace.KindFunc && h.Func != nil:
		return h.Func.Name
	case h.Copy:
		return "copy " + string(h.Event)
	case h.Event == trace.KindDrop && fate == trace.Dropped:
		return "DROPPED"
	}
	return string(h.Event)
}

// ReasonAt is "IP_INADDRERRORS at ip_error+0x94".
func ReasonAt(reason, location string) string {
	switch {
	case reason != "" && location != "":
		return reason + " at " + location
	case location != "":
		return "at " + location
	}
	return reason
}

// Fate is how a packet ended, as its last hop's comment says it: "DROPPED IP_INADDRERRORS at
// ip_error+0x94", "DELIVERED in pod default/web", "LEFT HOST on eth0", "UNKNOWN (the trace
// ended first)".
func Fate(f trace.Fate) string {
	var s string
	switch f.Outcome {
	case trace.Dropped:
		s = strings.TrimSpace("DROPPED " + ReasonAt(f.Reason, f.Location))
	case trace.Delivered:
		s = "DELIVERED"
		if ns := f.Namespace(); ns != "" {
			s += " in " + ns
		}
	case trace.LeftHost:
		s = "LEFT HOST"
		if f.Ifname != "" {
			s += " on " + f.Ifname
		}
	default:
		s = "UNKNOWN (the trace ended before its end was seen)"
	}
	if f.Node != "" {
		s += " on node " + f.Node
	}
	return s
}

// NAT says how cur's headers differ from prev's: "NAT dst 10.96.0.10:53 -> 10.244.1.5:53",
// "" when they do not (or the protocol changed: that is a tunnel, not NAT).
func NAT(prev, cur trace.Tuple) string {
	if prev.Proto != cur.Proto {
		return ""
	}
	ports := cur.Proto == trace.ProtoTCP || cur.Proto == trace.ProtoUDP
	end := func(a netip.Addr, port uint16) string {
		if ports && port != 0 {
			return netip.AddrPortFrom(a, port).String()
		}
		return a.String()
	}
	var parts []string
	if prev.Src != cur.Src || (ports && prev.Sport != cur.Sport) {
		parts = append(parts, "src "+end(prev.Src, prev.Sport)+" -> "+end(cur.Src, cur.Sport))
	}
	if prev.Dst != cur.Dst || (ports && prev.Dport != cur.Dport) {
		parts = append(parts, "dst "+end(prev.Dst, prev.Dport)+" -> "+end(cur.Dst, cur.Dport))
	}
	if !ports && prev.Sport != cur.Sport { // the ICMP echo identifier
		parts = append(parts, "id "+strconv.Itoa(int(prev.Sport))+" -> "+strconv.Itoa(int(cur.Sport)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "NAT " + strings.Join(parts, ", ")
}

var tableNames = map[uint32]string{253: "default", 254: "main", 255: "local"}

// Route is a routing decision: "route table main -> veth-ext via 10.0.2.2", "route table
// main: error -101".
func Route(r trace.Route) string {
	table := r.TableName
	if table == "" {
		table = tableNames[r.Table]
	}
	if table == "" {
		table = strconv.FormatUint(uint64(r.Table), 10)
	}
	s := "route table " + table
	if r.Err != 0 {
		return s + ": error " + strconv.Itoa(int(r.Err))
	}
	if r.OutIfname != "" {
		s += " -> " + r.OutIfname
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	return s
}

// Verdict is the verdict in one line: "DROPPED: forwarding disabled (net.ipv4.ip_forward=0)
// (confidence high)".
func Verdict(v trace.Verdict) string {
	s := strings.ToUpper(v.Outcome)
	if s == "" {
		s = "NO VERDICT"
	}
	switch {
	case v.Cause != "":
		s += ": " + v.Cause
		// A merged trace's verdict says on which node: "on node node2: the request...".
		if on, _, ok := strings.Cut(v.Summary, ": "); ok && strings.HasPrefix(on, "on node ") {
			s += " " + on
		}
	case v.Summary != "":
		s += ": " + firstSentence(v.Summary)
	}
	if v.Confidence != "" {
		s += " (confidence " + v.Confidence + ")"
	}
	return s
}

func firstSentence(s string) string {
	s = strings.TrimSpace(strings.SplitN(s, "\n", 2)[0])
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}
