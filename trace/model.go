// Package trace holds pathtrace's model of a run: the events the kernel reported, the packets
// they form, each packet's fate and the run's verdict. It is what the tracer produces, what the
// renderers print and what a saved trace file contains, so it imports nothing kernel-facing.
package trace

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// Schema names the version of the JSON document. Bump it only with an incompatible change.
const Schema = "pathtrace/v1"

// Trace is one run of pathtrace: the document written by --json and read back by `show`.
type Trace struct {
	Schema  string        `json:"schema"`
	Meta    Meta          `json:"meta"`
	Filter  Filter        `json:"filter"`
	Packets []Packet      `json:"packets"`
	Flows   []FlowSummary `json:"flows"`
	Verdict Verdict       `json:"verdict"`
}

// Meta describes where and how the trace was taken.
type Meta struct {
	Kernel    string    `json:"kernel"`
	Hostname  string    `json:"hostname"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	Args      []string  `json:"args"`
	Backend   string    `json:"backend"`
	Probes    []Probe   `json:"probes"`
	// Degraded says, one line each, what this kernel could not show.
	Degraded []string `json:"degraded,omitempty"`
	// Events counts the events received from the kernel; LostEvents those it could not hand
	// to us (ring buffer full).
	Events     uint64 `json:"events"`
	LostEvents uint64 `json:"lost_events"`
	// Untracked counts packets whose sk_buff the kernel could not remember (tracking map
	// full): their hops after a header rewrite are missing.
	Untracked uint64 `json:"untracked,omitempty"`
	// Skipped counts matching packets not followed because the ring buffer was filling up:
	// under overload whole packets are left out, so every packet shown is complete.
	Skipped uint64 `json:"skipped,omitempty"`
	// RoutesSkipped counts route lookups not reported for the same reason.
	RoutesSkipped uint64 `json:"routes_skipped,omitempty"`
	// MaxRate is the run's budget (--max-rate): at most this many new packets a second were
	// traced; 0 (absent) for none. OverBudget counts the matching packets that were not, over
	// it: whole packets, so the packets traced are a sample of the flow, each complete.
	MaxRate    uint64 `json:"max_rate,omitempty"`
	OverBudget uint64 `json:"over_budget,omitempty"`
	// NotKept counts packets past the run's limit (--max-packets): counted in the flows and
	// the verdict, not kept in the trace.
	NotKept uint64 `json:"not_kept,omitempty"`
	// EndReason says why the run ended: "duration", "count", "signal", "demo".
	EndReason string `json:"end_reason,omitempty"`
	// Nodes lists the traces a merged trace (`pathtrace merge`) was made of, one per node.
	Nodes []Node `json:"nodes,omitempty"`
	// Pods are the pods named in --src/--dst, as they were resolved.
	Pods []PodInfo `json:"pods,omitempty"`
	// Probe is the traffic pathtrace sent itself (--probe); nil when the flow was only watched.
	Probe *SentProbe `json:"probe,omitempty"`
}

// SentProbe is --probe's traffic: what pathtrace sent into the flow it traced, so that a reader
// of the trace knows its packets were made by the tracer and not by the workload.
type SentProbe struct {
	Kind  string     `json:"kind"` // icmp, tcp, udp, dns
	Dst   netip.Addr `json:"dst"`
	Dport uint16     `json:"dport,omitempty"`
	Name  string     `json:"name,omitempty"` // dns: the name asked for
	// Pod is the pod they left from (NAMESPACE/NAME, the --src pod); Netns its network
	// namespace as pathtrace opened it. Both "" for pathtrace's own namespace.
	Pod   string `json:"pod,omitempty"`
	Netns string `json:"netns,omitempty"`
	Count int    `json:"count"` // how many were to be sent
	Sent  int    `json:"sent"`  // how many left (fewer when the run ended first or sending failed)
	// Error is why sending stopped early.
	Error string `json:"error,omitempty"`
	// Node is, in a merged trace, the node that sent them.
	Node string `json:"node,omitempty"`
}

// PodInfo is a pod the user named instead of an address.
type PodInfo struct {
	Side      string       `json:"side"` // "src" or "dst"
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	IPs       []netip.Addr `json:"ips"`
	// Traced is the address the filter uses for the pod: the filter holds one per side, so
	// its primary address of the family the flow is in.
	Traced netip.Addr `json:"traced"`
	// Netns is the pod's network namespace as the runtime names it on the node.
	Netns string `json:"netns,omitempty"`
}

// Key is "namespace/name", as hops name the pod.
func (p PodInfo) Key() string { return p.Namespace + "/" + p.Name }

// Node is one node's trace in a merged trace: where it was taken and how its clock relates to
// the merged timeline (the first node's clock).
type Node struct {
	Name      string    `json:"name"` // what hops and fates say: the hostname, or the file's name
	Hostname  string    `json:"hostname,omitempty"`
	Kernel    string    `json:"kernel,omitempty"`
	StartedAt time.Time `json:"started_at"` // as that node's clock read it
	Source    string    `json:"source,omitempty"`
	// SkewNS is how far this node's clock was estimated to be ahead of the first node's;
	// SkewErrorNS bounds the estimate (half the round trip of the matched packets).
	SkewNS      int64 `json:"skew_ns"`
	SkewErrorNS int64 `json:"skew_error_ns,omitempty"`
	// SkewBasis says what the estimate rests on: "reference" (the first node), "both
	// directions", "one direction" (an upper bound: hops are ordered by causality) or "none".
	SkewBasis string `json:"skew_basis"`
	Packets   int    `json:"packets"` // packets in this node's trace
	Matched   int    `json:"matched"` // of them, joined with a packet seen on another node
}

// Probe is one kernel hook pathtrace tried to attach.
type Probe struct {
	Name     string `json:"name"`     // e.g. "skb:kfree_skb"
	Program  string `json:"program"`  // attach type: "tp_btf", "raw_tp"
	Attached bool   `json:"attached"` // false: Error says why
	Error    string `json:"error,omitempty"`
}

// Kind is what happened to a packet at one hop.
type Kind string

const (
	KindReceive Kind = "received" // net:netif_receive_skb: a device handed it to the stack
	KindQueue   Kind = "queued"   // net:net_dev_queue: queued for transmit on a device
	KindXmit    Kind = "xmit"     // net:net_dev_start_xmit: the driver took it
	KindRoute   Kind = "route"    // fib:fib_table_lookup: a routing decision
	KindDrop    Kind = "dropped"  // skb:kfree_skb: freed with a drop reason
	KindConsume Kind = "consumed" // skb:consume_skb: freed after normal use
	KindFunc    Kind = "function" // a kernel function it went through (fentry/fexit, kprobe)
)

// Hop is one thing that happened to a packet, as the kernel reported it.
type Hop struct {
	// TimeNS is nanoseconds since the trace started (CLOCK_MONOTONIC based).
	TimeNS uint64 `json:"time_ns"`
	Event  Kind   `json:"event"`
	Probe  string `json:"probe"`
	Place         // where it happened; written out flat (json.go keeps the document's order)
	// Tuple is the packet's headers as seen at this hop: a change from the previous hop is NAT.
	// For an encapsulated packet it is the carried (inner) packet's.
	Tuple *Headers `json:"tuple,omitempty"`
	// Encap names the tunnel the packet travels in at this hop ("vxlan", "geneve", "ipip"),
	// VNI its network identifier (VXLAN, Geneve; 0 when it is 0 or not read), and Outer the
	// tunnel packet's own headers.
	Encap string   `json:"encap,omitempty"`
	VNI   uint32   `json:"vni,omitempty"`
	Outer *Headers `json:"outer,omitempty"`
	Len   uint32   `json:"len,omitempty"`

	// Set on dropped and consumed hops.
	Reason string `json:"reason,omitempty"` // kernel drop reason name, without SKB_DROP_REASON_
	// ReasonInferred: the kernel reports no reason (before 5.17); Reason was inferred from
	// Location where that is unambiguous.
	ReasonInferred bool   `json:"reason_inferred,omitempty"`
	ReasonCode     uint32 `json:"reason_code,omitempty"` // its value in this kernel's enum
	Location       string `json:"location,omitempty"`    // function+0xoff

	Route *Route `json:"route,omitempty"` // set on route hops
	Func  *Func  `json:"func,omitempty"`  // set on function hops

	// Copy marks the free of a copy of this packet (a clone the kernel made for a raw or
	// packet socket, or for an ARP solicitation), not of the packet itself.
	Copy bool `json:"copy,omitempty"`

	// Bytes are the packet's headers as the kernel held them at this hop, from its IP header
	// on (--pcapng): IP, transport and a tunnel's carried headers, never the payload. In JSON
	// base64; none on route hops, nor in runs without --pcapng.
	Bytes []byte `json:"bytes,omitempty"`
}

// Route is the result of one FIB lookup.
type Route struct {
	Table     uint32     `json:"table"`
	TableName string     `json:"table_name,omitempty"`
	Err       int32      `json:"err"` // 0 or a negative errno (-ENETUNREACH...)
	OutIfname string     `json:"out_ifname,omitempty"`
	OutIndex  uint32     `json:"out_ifindex,omitempty"`
	Gateway   netip.Addr `json:"gateway,omitzero"`
	// Lookup is the flow the kernel looked up (addresses; ports and proto when known).
	Lookup Tuple `json:"lookup"`
	// Iif is the input device's index for an input lookup (0 for output lookups).
	Iif uint32 `json:"iif,omitempty"`
}

// Func is a kernel function a packet went through.
type Func struct {
	Name string `json:"name"` // "ip_forward", "nf_hook_slow"...
	// Ret is its return value where the backend sees it (fexit, kretprobe).
	Ret *int32 `json:"ret,omitempty"`
	// For nf_hook_slow: the netfilter hook ("FORWARD"...), the family ("ipv4"...) and the
	// verdict its return value means ("ACCEPT", "DROP", "STOLEN").
	Hook    string `json:"hook,omitempty"`
	Family  string `json:"family,omitempty"`
	Verdict string `json:"verdict,omitempty"`
}

// Tuple identifies a flow. For ICMP echo, Sport and Dport both carry the echo identifier so
// that request and reply share a tuple.
type Tuple struct {
	Proto Proto      `json:"proto"`
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	Sport uint16     `json:"sport,omitempty"`
	Dport uint16     `json:"dport,omitempty"`
}

// Reverse is the tuple of the other direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src, Sport: t.Dport, Dport: t.Sport}
}

// Headers is a Tuple plus the per-packet header fields that help a person tell packets apart.
type Headers struct {
	Tuple
	IPID     uint16   `json:"ip_id,omitempty"`
	TTL      uint8    `json:"ttl,omitempty"`
	TCPFlags TCPFlags `json:"tcp_flags,omitempty"`
	TCPSeq   uint32   `json:"tcp_seq,omitempty"`
	ICMPType uint8    `json:"icmp_type,omitempty"`
	ICMPCode uint8    `json:"icmp_code,omitempty"`
	ICMPID   uint16   `json:"icmp_id,omitempty"`
	ICMPSeq  uint16   `json:"icmp_seq,omitempty"`
	// Payload is the TCP/UDP payload length in bytes.
	Payload uint16 `json:"payload,omitempty"`
}

// Direction says which way a packet travels relative to the user's filter.
type Direction string

const (
	Request Direction = "request" // src -> dst as the user named them
	Reply   Direction = "reply"   // dst -> src
)

// Outcome is what finally became of a packet.
type Outcome string

const (
	Dropped   Outcome = "dropped"
	Delivered Outcome = "delivered" // consumed by the stack or a socket on this host
	LeftHost  Outcome = "left-host" // transmitted on a device that leads off this host
	Unknown   Outcome = "unknown"   // the trace ended before the packet's end was seen
)

// Fate is where and how a packet's journey on this host ended.
type Fate struct {
	Outcome  Outcome `json:"outcome"`
	Reason   string  `json:"reason,omitempty"`
	Location string  `json:"location,omitempty"`
	// Place is where the journey ended (its Node in a merged trace); the fate names no
	// ifindex.
	Place
	// Note qualifies an outcome pathtrace inferred rather than saw.
	Note string `json:"note,omitempty"`
}

// Packet is one sk_buff's journey: every hop from the first time it matched to its end.
type Packet struct {
	ID    int       `json:"id"`
	Flow  Direction `json:"flow"`
	Tuple Headers   `json:"tuple"`
	Hops  []Hop     `json:"hops"`
	Fate  Fate      `json:"fate"`
	// CopyOf is the packet this one is a clone of (a bridge flooding it to several ports, tc
	// mirred); RetransmitOf the earlier packet whose TCP segment this one sends again.
	CopyOf       int `json:"copy_of,omitempty"`
	RetransmitOf int `json:"retransmit_of,omitempty"`
	// Incomplete says hops of this packet were lost (the ring buffer was full).
	Incomplete bool `json:"incomplete,omitempty"`
	// FromProbe says the packet is pathtrace's own (--probe, Meta.Probe), or a reply to one:
	// its ICMP echo id or its port is the one the probe's socket had.
	FromProbe bool `json:"from_probe,omitempty"`
	// FlowTuple is the flow assembly classified the packet into: its request-direction tuple,
	// which NAT may have made differ from Tuple. Not saved: a packet read from a file has
	// none, and the flows are classified again from its hops.
	FlowTuple Tuple `json:"-"`
}

// FlowSummary counts one flow's packets and says where they died.
type FlowSummary struct {
	Tuple     Tuple      `json:"tuple"` // in the request direction
	Requests  int        `json:"requests"`
	Replies   int        `json:"replies"`
	Delivered int        `json:"delivered"`
	LeftHost  int        `json:"left_host"`
	Unknown   int        `json:"unknown"`
	Drops     []DropSite `json:"drops,omitempty"`
	// Retransmissions and Copies count packets that repeated or cloned another of the flow.
	Retransmissions int `json:"retransmissions,omitempty"`
	Copies          int `json:"copies,omitempty"`
}

// DropSite is one place packets of a flow died, with how many.
type DropSite struct {
	Flow     Direction `json:"flow"`
	Reason   string    `json:"reason"`
	Location string    `json:"location"`
	// Place is the fates' place; the document names it without netns inode and ifindex.
	Place
	Count int `json:"count"`
}

// Verdict is the run's conclusion.
type Verdict struct {
	Outcome string `json:"outcome"` // "dropped", "delivered", "left-host", "no-packets", "not-sent", "unknown"
	// Class is the catalogue's class of failure that made the verdict (docs/verdicts.md).
	Class    string     `json:"class,omitempty"`
	Cause    string     `json:"cause,omitempty"`
	Summary  string     `json:"summary"`
	Evidence []Evidence `json:"evidence,omitempty"`
	Fix      []string   `json:"fix,omitempty"`
	// Unknown is what the verdict could not observe, each with the command that would settle
	// it: a confident verdict has none, a cautious one says what it lacks.
	Unknown    []NotKnown `json:"unknown,omitempty"`
	Confidence string     `json:"confidence"` // "high", "medium", "low"
}

// NotKnown is one thing a verdict does not know, and how to find it out.
type NotKnown struct {
	What   string `json:"what"`
	Settle string `json:"settle"`
}

// Evidence is one fact a verdict rests on, and where it came from.
type Evidence struct {
	What   string `json:"what"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Event is a Hop as it arrives from the kernel, with the identity of the sk_buff it belongs to
// and the CPU it ran on. These two never reach the saved trace: the sk_buff address is a kernel
// pointer, and both matter only while assembling packets.
type Event struct {
	SKB uint64 `json:"skb"`
	CPU uint32 `json:"cpu"`
	// First marks the first event of an sk_buff's life: an address seen before now carries a
	// new packet, the old one having been freed where no tracepoint saw it.
	First bool `json:"first,omitempty"`
	// Gap says events of this packet were lost before this one.
	Gap bool `json:"gap,omitempty"`
	Hop Hop  `json:"hop"`
}

// SortHops puts hops in time order, keeping the order of hops at the same time: hops from
// different CPUs can arrive out of order, and a story told out of order misleads.
func SortHops(hops []Hop) {
	if inTimeOrder(hops) {
		return // the usual case; a hop is a large struct to compare by value
	}
	if len(hops) <= 32 {
		// A packet's few hops, a route lookup or a copy's free out of place: moved back
		// into place, each hop copied once, not swapped along.
		for i := 1; i < len(hops); i++ {
			if hops[i].TimeNS >= hops[i-1].TimeNS {
				continue
			}
			h := hops[i]
			j := i
			for ; j > 0 && hops[j-1].TimeNS > h.TimeNS; j-- {
				hops[j] = hops[j-1]
			}
			hops[j] = h
		}
		return
	}
	slices.SortStableFunc(hops, func(x, y Hop) int { return cmp.Compare(x.TimeNS, y.TimeNS) })
}

// InTimeOrder is hops in time order: hops itself when they already are, else a sorted copy.
func InTimeOrder(hops []Hop) []Hop {
	if inTimeOrder(hops) {
		return hops
	}
	hops = slices.Clone(hops)
	SortHops(hops)
	return hops
}

func inTimeOrder(hops []Hop) bool {
	for i := 1; i < len(hops); i++ {
		if hops[i-1].TimeNS > hops[i].TimeNS {
			return false
		}
	}
	return true
}
