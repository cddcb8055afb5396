// Package tracetest builds the hand-made traces the renderers are tested with, so the text and
// JSON tests agree on what a realistic trace looks like. Nothing here touches a kernel.
//
// The scenes share one topology: a pod netns "pod-a" (10.0.1.2 on eth0) whose veth peer
// veth-pod sits in the node's netns "node"; the node reaches netns "ext" (10.0.2.2) through
// veth-ext and the rest of the cluster through eth0.
package tracetest

import (
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

const (
	podNS  = 4026532301
	nodeNS = 4026531840
	extNS  = 4026532402
)

var (
	podA     = netip.MustParseAddr("10.0.1.2")
	ext      = netip.MustParseAddr("10.0.2.2")
	service  = netip.MustParseAddr("10.96.0.10")
	backend  = netip.MustParseAddr("10.0.3.7")
	nowhere  = netip.MustParseAddr("10.9.9.9")
	started  = time.Date(2025, 3, 4, 3, 12, 0, 0, time.FixedZone("CET", 3600))
	allProbe = []string{"skb:kfree_skb", "skb:consume_skb", "net:netif_receive_skb", "net:net_dev_queue", "net:net_dev_start_xmit", "fib:fib_table_lookup"}
)

func meta(d time.Duration) trace.Meta {
	m := trace.Meta{
		Kernel:    "6.8.0-45-generic",
		Hostname:  "node-a",
		StartedAt: started,
		EndedAt:   started.Add(d),
		Args:      []string{"pathtrace", "--src", "10.0.1.2", "--dst", "10.0.2.2", "--proto", "icmp"},
		Backend:   "tp_btf",
		EndReason: "duration",
	}
	for _, p := range allProbe {
		m.Probes = append(m.Probes, trace.Probe{Name: p, Program: "tp_btf", Attached: true})
	}
	return m
}

func icmpFilter(dst netip.Addr) trace.Filter {
	return trace.Filter{Src: netip.PrefixFrom(podA, 32), Dst: netip.PrefixFrom(dst, 32), Proto: trace.ProtoICMP}
}

func echo(src, dst netip.Addr, typ uint8, seq uint16) trace.Headers {
	return trace.Headers{
		Tuple:    trace.Tuple{Proto: trace.ProtoICMP, Src: src, Dst: dst, Sport: 4660, Dport: 4660},
		TTL:      64,
		ICMPType: typ,
		ICMPID:   4660,
		ICMPSeq:  seq,
	}
}

func hop(us float64, kind trace.Kind, ns uint32, name, ifname string, h *trace.Headers) trace.Hop {
	probe := map[trace.Kind]string{
		trace.KindReceive: "net:netif_receive_skb", trace.KindQueue: "net:net_dev_queue",
		trace.KindXmit: "net:net_dev_start_xmit", trace.KindRoute: "fib:fib_table_lookup",
		trace.KindDrop: "skb:kfree_skb", trace.KindConsume: "skb:consume_skb",
	}[kind]
	hp := trace.Hop{TimeNS: uint64(us * 1000), Event: kind, Probe: probe, Place: trace.Place{Netns: ns, NetnsName: name, Ifname: ifname}, Tuple: h}
	if h != nil && kind != trace.KindRoute {
		hp.Len = 84
	}
	return hp
}

func at(hp trace.Hop, reason, location string) trace.Hop {
	hp.Reason, hp.Location = reason, location
	return hp
}

func via(hp trace.Hop, r trace.Route) trace.Hop {
	hp.Route = &r
	return hp
}

func ptr(h trace.Headers) *trace.Headers { return &h }

// ForwardDrop: the node has net.ipv4.ip_forward=0, so every echo request from pod-a to ext
// dies in the node netns right after routing.
func ForwardDrop() *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(10 * time.Second), Filter: icmpFilter(ext)}
	for seq := uint16(1); seq <= 3; seq++ {
		h := echo(podA, ext, 8, seq)
		base := float64(seq-1) * 1e6
		t.Packets = append(t.Packets, trace.Packet{
			ID: int(seq), Flow: trace.Request, Tuple: h,
			Hops: []trace.Hop{
				hop(base, trace.KindQueue, podNS, "pod-a", "eth0", ptr(h)),
				hop(base+4, trace.KindXmit, podNS, "pod-a", "eth0", ptr(h)),
				hop(base+11, trace.KindReceive, nodeNS, "node", "veth-pod", ptr(h)),
				via(hop(base+16, trace.KindRoute, nodeNS, "node", "veth-pod", nil), trace.Route{
					Table: 254, TableName: "main", OutIfname: "veth-ext", OutIndex: 7,
					Lookup: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: ext},
				}),
				at(hop(base+45, trace.KindDrop, nodeNS, "node", "veth-pod", ptr(h)), "IP_INADDRERRORS", "ip_error+0x5a"),
			},
			Fate: trace.Fate{Outcome: trace.Dropped, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a",
				Place: trace.Place{Ifname: "veth-pod", Netns: nodeNS, NetnsName: "node"}},
		})
	}
	t.Flows = []trace.FlowSummary{{
		Tuple:    trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: ext},
		Requests: 3,
		Drops: []trace.DropSite{{Flow: trace.Request, Reason: "IP_INADDRERRORS", Location: "ip_error+0x5a",
			Place: trace.Place{Ifname: "veth-pod", NetnsName: "node"}, Count: 3}},
	}}
	t.Verdict = trace.Verdict{
		Outcome:    "dropped",
		Cause:      "IP forwarding is disabled in netns node",
		Summary:    "All 3 echo requests from 10.0.1.2 were dropped by netns node after routing: it does not forward packets.",
		Confidence: "high",
		Evidence: []trace.Evidence{
			{What: "drop reason", Value: "IP_INADDRERRORS at ip_error+0x5a", Source: "skb:kfree_skb"},
			{What: "net.ipv4.ip_forward", Value: "0", Source: "/proc/sys/net/ipv4/ip_forward in netns node"},
		},
		Fix: []string{"sysctl -w net.ipv4.ip_forward=1   (in netns node)"},
	}
	return t
}

// HealthyPing: one echo request delivered in ext and its reply delivered back in pod-a.
func HealthyPing() *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(2 * time.Second), Filter: icmpFilter(ext)}
	t.Meta.EndReason = "count"
	req, rep := echo(podA, ext, 8, 1), echo(ext, podA, 0, 1)
	t.Packets = []trace.Packet{{
		ID: 1, Flow: trace.Request, Tuple: req,
		Hops: []trace.Hop{
			hop(0, trace.KindXmit, podNS, "pod-a", "eth0", ptr(req)),
			hop(9, trace.KindReceive, nodeNS, "node", "veth-pod", ptr(req)),
			via(hop(14, trace.KindRoute, nodeNS, "node", "veth-pod", nil), trace.Route{
				Table: 254, TableName: "main", OutIfname: "veth-ext", OutIndex: 7,
				Lookup: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: ext},
			}),
			hop(21, trace.KindXmit, nodeNS, "node", "veth-ext", ptr(req)),
			hop(30, trace.KindReceive, extNS, "ext", "eth0", ptr(req)),
			at(hop(38, trace.KindConsume, extNS, "ext", "eth0", ptr(req)), "", "icmp_rcv+0x1c5"),
		},
		Fate: trace.Fate{Outcome: trace.Delivered, Location: "icmp_rcv+0x1c5", Place: trace.Place{Ifname: "eth0", Netns: extNS, NetnsName: "ext"}},
	}, {
		ID: 2, Flow: trace.Reply, Tuple: rep,
		Hops: []trace.Hop{
			hop(52, trace.KindXmit, extNS, "ext", "eth0", ptr(rep)),
			hop(60, trace.KindReceive, nodeNS, "node", "veth-ext", ptr(rep)),
			hop(71, trace.KindXmit, nodeNS, "node", "veth-pod", ptr(rep)),
			hop(80, trace.KindReceive, podNS, "pod-a", "eth0", ptr(rep)),
			at(hop(1093, trace.KindConsume, podNS, "pod-a", "eth0", ptr(rep)), "", "skb_free_datagram+0x11"),
		},
		Fate: trace.Fate{Outcome: trace.Delivered, Location: "skb_free_datagram+0x11", Place: trace.Place{Ifname: "eth0", Netns: podNS, NetnsName: "pod-a"}},
	}}
	t.Flows = []trace.FlowSummary{{
		Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: ext, Sport: 4660, Dport: 4660}, Requests: 1, Replies: 1, Delivered: 2,
	}}
	t.Verdict = trace.Verdict{
		Outcome:    "delivered",
		Summary:    "The echo request reached ext and the reply reached pod-a: this host forwards the flow both ways.",
		Confidence: "high",
	}
	return t
}

// NATRewrite: a TCP SYN to a ClusterIP is DNATed to a backend on another node and leaves on
// eth0; the SYN-ACK comes back and is un-NATed on its way into pod-a.
func NATRewrite() *trace.Trace {
	f := trace.Filter{Src: netip.PrefixFrom(podA, 32), Dst: netip.PrefixFrom(service, 32), Proto: trace.ProtoTCP, Dport: 80}
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(5 * time.Second), Filter: f}
	t.Meta.EndReason = "signal"
	syn := trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoTCP, Src: podA, Dst: service, Sport: 43210, Dport: 80},
		TTL: 64, TCPFlags: 0x02, TCPSeq: 1105024978}
	dnat := syn
	dnat.Dst, dnat.Dport = backend, 8080
	synack := trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoTCP, Src: backend, Dst: podA, Sport: 8080, Dport: 43210},
		TTL: 63, TCPFlags: 0x12, TCPSeq: 3290851407}
	undo := synack
	undo.Src, undo.Sport = service, 80
	t.Packets = []trace.Packet{{
		ID: 1, Flow: trace.Request, Tuple: syn,
		Hops: []trace.Hop{
			hop(0, trace.KindXmit, podNS, "pod-a", "eth0", ptr(syn)),
			hop(8, trace.KindReceive, nodeNS, "node", "veth-pod", ptr(syn)),
			via(hop(27, trace.KindRoute, nodeNS, "node", "veth-pod", nil), trace.Route{
				Table: 254, TableName: "main", OutIfname: "eth0", OutIndex: 2,
				Gateway: netip.MustParseAddr("192.168.10.1"),
				Lookup:  trace.Tuple{Proto: trace.ProtoTCP, Src: podA, Dst: backend, Sport: 43210, Dport: 8080},
			}),
			hop(33, trace.KindQueue, nodeNS, "node", "eth0", ptr(dnat)),
			hop(36, trace.KindXmit, nodeNS, "node", "eth0", ptr(dnat)),
		},
		Fate: trace.Fate{Outcome: trace.LeftHost, Place: trace.Place{Ifname: "eth0", Netns: nodeNS, NetnsName: "node"}},
	}, {
		ID: 2, Flow: trace.Reply, Tuple: synack,
		Hops: []trace.Hop{
			hop(412, trace.KindReceive, nodeNS, "node", "eth0", ptr(synack)),
			hop(425, trace.KindXmit, nodeNS, "node", "veth-pod", ptr(undo)),
			hop(433, trace.KindReceive, podNS, "pod-a", "eth0", ptr(undo)),
			at(hop(441, trace.KindConsume, podNS, "pod-a", "eth0", ptr(undo)), "", "tcp_rcv_state_process+0x1b4"),
		},
		Fate: trace.Fate{Outcome: trace.Delivered, Location: "tcp_rcv_state_process+0x1b4", Place: trace.Place{Ifname: "eth0", Netns: podNS, NetnsName: "pod-a"}},
	}}
	t.Flows = []trace.FlowSummary{{
		Tuple: trace.Tuple{Proto: trace.ProtoTCP, Src: podA, Dst: service, Sport: 43210, Dport: 80}, Requests: 1, Replies: 1, LeftHost: 1, Delivered: 1,
	}}
	t.Verdict = trace.Verdict{
		Outcome:    "delivered",
		Summary:    "The SYN was NATed to 10.0.3.7:8080 and left on eth0; the SYN-ACK came back and reached pod-a.",
		Confidence: "medium",
		Evidence:   []trace.Evidence{{What: "DNAT", Value: "10.96.0.10:80 -> 10.0.3.7:8080", Source: "headers changed between veth-pod and eth0"}},
	}
	return t
}

// RouteError: the node has an "unreachable" route for 10.9.9.0/24, so the FIB lookup fails
// with EHOSTUNREACH and ip_error frees the packet.
func RouteError() *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(3 * time.Second), Filter: icmpFilter(nowhere)}
	h := echo(podA, nowhere, 8, 1)
	t.Packets = []trace.Packet{{
		ID: 1, Flow: trace.Request, Tuple: h,
		Hops: []trace.Hop{
			hop(0, trace.KindXmit, podNS, "pod-a", "eth0", ptr(h)),
			hop(10, trace.KindReceive, nodeNS, "node", "veth-pod", ptr(h)),
			via(hop(14, trace.KindRoute, nodeNS, "node", "veth-pod", nil), trace.Route{
				Table: 254, TableName: "main", Err: -113,
				Lookup: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: nowhere},
			}),
			at(hop(19, trace.KindDrop, nodeNS, "node", "veth-pod", ptr(h)), "NOT_SPECIFIED", "ip_error+0x8f"),
		},
		Fate: trace.Fate{Outcome: trace.Dropped, Reason: "NOT_SPECIFIED", Location: "ip_error+0x8f", Place: trace.Place{Ifname: "veth-pod", Netns: nodeNS, NetnsName: "node"}},
	}}
	t.Flows = []trace.FlowSummary{{
		Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: nowhere}, Requests: 1,
		Drops: []trace.DropSite{{Flow: trace.Request, Reason: "NOT_SPECIFIED", Location: "ip_error+0x8f", Place: trace.Place{Ifname: "veth-pod", NetnsName: "node"}, Count: 1}},
	}}
	t.Verdict = trace.Verdict{
		Outcome:    "dropped",
		Cause:      "no usable route: table main has an unreachable route for 10.9.9.9",
		Summary:    "The echo request was dropped in netns node because the route lookup failed (EHOSTUNREACH).",
		Confidence: "high",
		Evidence:   []trace.Evidence{{What: "route lookup", Value: "table main: -113 EHOSTUNREACH", Source: "fib:fib_table_lookup"}},
		Fix:        []string{"ip route show table main 10.9.9.9   (in netns node)", "remove or replace the unreachable route"},
	}
	return t
}

// LostEvents: the ring buffer overflowed; one packet's end was never seen and a probe failed
// to attach on this kernel.
func LostEvents() *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(30 * time.Second), Filter: icmpFilter(ext)}
	t.Meta.EndReason = "signal"
	t.Meta.LostEvents = 1834
	t.Meta.Probes[5] = trace.Probe{Name: "fib:fib_table_lookup", Program: "tp_btf", Error: "attach tp_btf: permission denied"}
	t.Meta.Degraded = []string{"route decisions are not shown: fib:fib_table_lookup did not attach"}
	h := echo(podA, ext, 8, 7)
	t.Packets = []trace.Packet{{
		ID: 1, Flow: trace.Request, Tuple: h,
		Hops: []trace.Hop{
			hop(0, trace.KindXmit, podNS, "pod-a", "eth0", ptr(h)),
			hop(12, trace.KindReceive, nodeNS, "node", "veth-pod", ptr(h)),
		},
		Fate: trace.Fate{Outcome: trace.Unknown},
	}}
	t.Flows = []trace.FlowSummary{{Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: podA, Dst: ext}, Requests: 1, Unknown: 1}}
	t.Verdict = trace.Verdict{
		Outcome:    "unknown",
		Summary:    "The request reached netns node and was not seen again; 1834 events were lost, so its end may be among them.",
		Confidence: "low",
		Fix:        []string{"re-run with a narrower filter so fewer events are produced"},
	}
	return t
}

// NoPackets: nothing matched during the whole run.
func NoPackets() *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Meta: meta(10 * time.Second), Filter: icmpFilter(ext)}
	t.Verdict = trace.Verdict{
		Outcome:    "no-packets",
		Summary:    "No packet of this flow passed through this host's network stack while pathtrace ran.",
		Confidence: "medium",
		Fix:        []string{"check that traffic is flowing (ping 10.0.2.2 from the pod) while pathtrace runs", "check that the addresses are the pod's, not a Service's"},
	}
	return t
}

// PodForwardDrop is ForwardDrop on a Kubernetes node: --src named the pod default/web, whose
// namespace pod-a is, and the node's veth-pod is its veth's host end.
func PodForwardDrop() *trace.Trace {
	t := ForwardDrop()
	t.Meta.Args = []string{"pathtrace", "--src", "default/web", "--dst", "10.0.2.2", "--proto", "icmp"}
	t.Meta.Pods = []trace.PodInfo{{Side: "src", Namespace: "default", Name: "web", Netns: "/var/run/netns/cni-5b1e",
		IPs: []netip.Addr{podA, netip.MustParseAddr("fd00:10::2")}, Traced: podA}}
	for i := range t.Packets {
		for j := range t.Packets[i].Hops {
			h := &t.Packets[i].Hops[j]
			switch {
			case h.Netns == podNS:
				h.Pod = "default/web"
			case h.Ifname == "veth-pod":
				h.DevicePod = "default/web"
			}
		}
		t.Packets[i].Fate.DevicePod = "default/web"
	}
	t.Flows[0].Drops[0].DevicePod = "default/web"
	t.Verdict.Summary = "the request was dropped in node veth-pod -> pod default/web at ip_error+0x5a (IP_INADDRERRORS): the node does not forward packets"
	return t
}

// Scenes names every scene, for table-driven tests and golden files.
func Scenes() []Scene {
	return []Scene{
		{"forward-drop", ForwardDrop},
		{"healthy-ping", HealthyPing},
		{"nat-rewrite", NATRewrite},
		{"route-error", RouteError},
		{"lost-events", LostEvents},
		{"no-packets", NoPackets},
		{"pod-forward-drop", PodForwardDrop},
	}
}

// Scene is one named hand-built trace.
type Scene struct {
	Name  string
	Build func() *trace.Trace
}
