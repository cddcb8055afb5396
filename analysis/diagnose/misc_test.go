package diagnose

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// miscFacts adds to fakeFacts the optional readings of the socket, tc-filter, martian, VXLAN
// and rp_filter classes.
type miscFacts struct {
	fakeFacts
	socks   []Socket
	kind    string
	filters []TCFilter
	owner   [2]string // device, prefix
	vxlans  []VXLANDevice
	back    string
	fail    error // every optional reading fails with it
}

func (f miscFacts) SocketsOn(uint32, string, uint16) ([]Socket, error) { return f.socks, f.fail }
func (f miscFacts) TCFilters(uint32, string, string) (string, []TCFilter, error) {
	return f.kind, f.filters, f.fail
}
func (f miscFacts) AddrOwner(uint32, netip.Addr) (string, string, error) {
	return f.owner[0], f.owner[1], f.fail
}
func (f miscFacts) VXLANs(uint32) ([]VXLANDevice, error)         { return f.vxlans, f.fail }
func (f miscFacts) RouteBack(uint32, netip.Addr) (string, error) { return f.back, f.fail }

func udp(src, dst netip.Addr, dport uint16) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: src, Dst: dst, Sport: 40000, Dport: dport}}
}

// vxlanDropped is a VXLAN packet (inner 10.9.0.1 > 10.9.0.2) that died on eth0.
// withVNI gives a VXLAN packet's hops the VNI its header carried.
func withVNI(p trace.Packet, vni uint32) trace.Packet {
	for i := range p.Hops {
		p.Hops[i].VNI = vni
	}
	return p
}

func vxlanDropped(reason, loc string) trace.Packet {
	in := udp(netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), 80)
	p := dropped(trace.Request, "eth0", reason, loc, in)
	outer := udp(podIP, extIP, 4789)
	for i := range p.Hops {
		p.Hops[i].Encap, p.Hops[i].Outer = "vxlan", outer
	}
	return p
}

type miscCase struct {
	name                                             string
	v                                                trace.Verdict
	class, cause, summary, evidence, fix, confidence string
}

func (c miscCase) check(t *testing.T) {
	t.Helper()
	v := c.v
	if c.class != "" && v.Class != c.class {
		t.Errorf("class %q, want %q", v.Class, c.class)
	}
	if !strings.Contains(v.Cause, c.cause) {
		t.Errorf("cause %q, want %q", v.Cause, c.cause)
	}
	if !strings.Contains(v.Summary, c.summary) {
		t.Errorf("summary %q lacks %q", v.Summary, c.summary)
	}
	if c.evidence != "" {
		found := false
		for _, e := range v.Evidence {
			found = found || strings.Contains(e.What+"="+e.Value, c.evidence)
		}
		if !found {
			t.Errorf("evidence %+v lacks %q", v.Evidence, c.evidence)
		}
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), c.fix) {
		t.Errorf("fix %q lacks %q", v.Fix, c.fix)
	}
	if c.confidence != "" && v.Confidence != c.confidence {
		t.Errorf("confidence %q, want %q", v.Confidence, c.confidence)
	}
}

func TestMiscClasses(t *testing.T) {
	req := icmp(podIP, extIP)
	rp := dropped(trace.Request, "veth-pod", "IP_RPFILTER", "ip_rcv_finish_core+0x260", req)
	strictAll := map[string]string{"net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.veth-pod.rp_filter": "0"}
	failed := errors.New("netns gone")
	closedTCP := dropped(trace.Request, "eth0", "NO_SOCKET", "tcp_v4_rcv+0x99", tcp(podIP, extIP, 7000))
	rst := dropped(trace.Reply, "eth0", "", "", tcp(extIP, podIP, 40000))
	rst.Fate = trace.Fate{Outcome: trace.Delivered}
	rcv := dropped(trace.Request, "eth0", "SOCKET_RCVBUFF", "udp_queue_rcv_one_skb+0x437", udp(podIP, extIP, 7002))
	rcvSock := Socket{Proto: "udp", State: "UNCONN", Local: netip.MustParseAddrPort("[::]:7002"), HasMem: true, Rcvbuf: 8192, RmemAlloc: 6912, Drops: 27, Procs: []string{"dnsd(42)"}}
	u32 := TCFilter{Kind: "u32", Pref: 10, Drops: true, Text: "filter protocol ip pref 10 u32 chain 0 fh 800::800 match 0a000102/ffffffff at 12 (ip src 10.0.1.2/32) action gact drop"}
	tcDrop := dropped(trace.Request, "br0", "TC_INGRESS", "__netif_receive_skb_core+0x56b", req)
	dnat := dropped(trace.Request, "veth-pod", "IP_LOCALNET", "ip_rcv_finish_core+0x260", icmp(podIP, netip.MustParseAddr("127.0.0.1")))
	dnat.Tuple.Dst = netip.MustParseAddr("10.0.3.3")
	cases := []miscCase{
		{name: "rp_filter strict from all, route back read live", class: "rp-filter",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: strictAll}, back: "10.0.1.2 via 10.0.2.2 dev veth-ext"}, nil, rp),
			cause: "reverse-path filter (strict) on veth-pod", summary: "`10.0.1.2 via 10.0.2.2 dev veth-ext`, not veth-pod",
			evidence: "effective rp_filter on veth-pod=1 (strict)", fix: "sysctl -w net.ipv4.conf.all.rp_filter=2", confidence: "high"},
		{name: "rp_filter loose on the device", class: "rp-filter",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: map[string]string{"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.veth-pod.rp_filter": "2"}}, fail: failed}, nil, rp),
			cause: "reverse-path filter (loose) on veth-pod", summary: "no route back", evidence: "route back to 10.0.1.2=", fix: "ip route get 10.0.1.2", confidence: "high"},
		{name: "rp_filter off now", class: "rp-filter",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: map[string]string{"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.veth-pod.rp_filter": "0"}}}, nil, rp),
			cause: "reverse-path filter on veth-pod", summary: "changed since the drop?", fix: "ip route get", confidence: "medium"},
		{name: "rp_filter replay", class: "rp-filter", v: verdictOf(nil, nil, rp),
			cause: "reverse-path filter on veth-pod", fix: "net.ipv4.conf.veth-pod.rp_filter=2", confidence: "medium"},
		{name: "local source held by lo", class: "martian-source",
			v: verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: map[string]string{"net.ipv4.conf.all.accept_local": "0", "net.ipv4.conf.veth-pod.accept_local": "0"}}, owner: [2]string{"lo", "10.0.1.2/32"}}, nil,
				dropped(trace.Request, "veth-pod", "IP_LOCAL_SOURCE", "ip_rcv_finish_core+0x260", req)),
			cause: "source address is local (10.0.1.2 is on lo here)", evidence: "device holding 10.0.1.2=10.0.1.2/32 on lo",
			fix: "ip netns exec node ip addr del 10.0.1.2/32 dev lo", confidence: "high"},
		{name: "local source, addresses unreadable", class: "martian-source",
			v:     verdictOf(miscFacts{fail: failed}, nil, dropped(trace.Request, "veth-pod", "IP_LOCAL_SOURCE", "ip_rcv_finish_core+0x260", req)),
			cause: "source address is local (10.0.1.2)", evidence: "device holding 10.0.1.2=netns gone", fix: "ip -br addr", confidence: "medium"},
		{name: "martian source", class: "martian-source",
			v:     verdictOf(nil, nil, dropped(trace.Request, "veth-pod", "IP_INVALID_SOURCE", "ip_rcv_finish_core+0x260", req)),
			cause: "martian source 10.0.1.2", fix: "log_martians=1", confidence: "high"},
		{name: "route_localnet after a DNAT", class: "martian-localnet",
			v:     verdictOf(fakeFacts{sysctl: map[string]string{"net.ipv4.conf.all.route_localnet": "0", "net.ipv4.conf.veth-pod.route_localnet": "0"}}, nil, dnat),
			cause: "127.0.0.1 destination from veth-pod (route_localnet=0)", summary: "rewritten from 10.0.3.3 by a DNAT",
			evidence: "net.ipv4.conf.veth-pod.route_localnet=0", fix: "sysctl -w net.ipv4.conf.veth-pod.route_localnet=1", confidence: "high"},
		{name: "route_localnet replay", class: "martian-localnet", v: verdictOf(nil, nil, dnat),
			cause: "127.0.0.1 destination from veth-pod", fix: "route_localnet=1", confidence: "medium"},
		{name: "closed TCP port, the RST seen", class: "no-socket",
			v:     verdictOf(miscFacts{}, nil, closedTCP, rst),
			cause: "connection refused: nothing listens on TCP port 7000 in node", summary: "a RST was sent back (1 reply packets traced)",
			evidence: "TCP sockets on port 7000 in node=none", fix: "ss -ltnp 'sport = :7000'", confidence: "high"},
		{name: "closed TCP port, no RST seen", class: "no-socket", v: verdictOf(nil, nil, closedTCP),
			cause: "connection refused", summary: "this trace saw no reply", fix: "ss -ltnp", confidence: "high"},
		{name: "port bound on another address", class: "no-socket",
			v:     verdictOf(miscFacts{socks: []Socket{{Proto: "tcp", State: "LISTEN", Local: netip.MustParseAddrPort("127.0.0.1:7000"), Procs: []string{"web(7)"}}}}, nil, closedTCP),
			cause: "connection refused", summary: "tcp LISTEN 127.0.0.1:7000 users:web(7)", confidence: "medium"},
		{name: "sockets unreadable", class: "no-socket", v: verdictOf(miscFacts{fail: failed}, nil, closedTCP),
			cause: "connection refused", evidence: "TCP sockets on port 7000 in node=netns gone", confidence: "high"},
		{name: "UDP v6 closed port", class: "no-socket",
			v: verdictOf(nil, nil, dropped(trace.Request, "eth0", "NO_SOCKET", "__udp6_lib_rcv+0xe1",
				udp(netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1"), 53))),
			cause: "port unreachable: nothing listens on UDP port 53", summary: "ICMPv6 port unreachable", fix: "ss -lunp", confidence: "high"},
		{name: "overlay packet, no VXLAN device", class: "no-socket",
			v:     verdictOf(miscFacts{}, nil, vxlanDropped("NO_SOCKET", "__udp4_lib_rcv+0x4bc")),
			cause: "no VXLAN device on UDP port 4789 in node", summary: "an overlay packet (vxlan, inner 10.9.0.1 > 10.9.0.2) came in 10.0.1.2:40000 > 10.0.2.2:4789",
			evidence: "VXLAN devices in node=none", fix: "dstport 4789", confidence: "high"},
		{name: "overlay packet, VXLAN device on another port", class: "no-socket",
			v:     verdictOf(miscFacts{vxlans: []VXLANDevice{{Name: "flannel.1", VNI: 1, Port: 8472, Up: true}}}, nil, vxlanDropped("NO_SOCKET", "__udp4_lib_rcv+0x4bc")),
			cause: "no VXLAN device on UDP port 4789", summary: "flannel.1 (VNI 1, port 8472)", confidence: "high"},
		{name: "VNI not found", class: "vxlan-vni",
			v:     verdictOf(miscFacts{vxlans: []VXLANDevice{{Name: "vx0", VNI: 42, Port: 4789, Underlay: "eth0", Up: true}}}, nil, vxlanDropped("VXLAN_VNI_NOT_FOUND", "vxlan_rcv+0x8c")),
			cause: "no VXLAN device for the packet's VNI on UDP port 4789", summary: "The devices on that port here: vx0 (VNI 42, port 4789, dev eth0)",
			evidence: "VXLAN devices on port 4789=vx0 (VNI 42", fix: "ip -d link show type vxlan", confidence: "high"},
		{name: "VNI not found, the packet's VNI known", class: "vxlan-vni",
			v:     verdictOf(miscFacts{vxlans: []VXLANDevice{{Name: "vx0", VNI: 42, Port: 4789, Underlay: "eth0", Up: true}}}, nil, withVNI(vxlanDropped("VXLAN_VNI_NOT_FOUND", "vxlan_rcv+0x8c"), 43)),
			cause: "no VXLAN device for VNI 43 on UDP port 4789", summary: "the sender uses VNI 43",
			evidence: "the packet's VNI=43", fix: "ip link add vxlan43 type vxlan id 43 dstport 4789 dev eth0", confidence: "high"},
		{name: "VNI not found, a device for it there now", class: "vxlan-vni",
			v:     verdictOf(miscFacts{vxlans: []VXLANDevice{{Name: "vx43", VNI: 43, Port: 4789, Underlay: "eth1", Up: true}}}, nil, withVNI(vxlanDropped("VXLAN_VNI_NOT_FOUND", "vxlan_rcv+0x8c"), 43)),
			cause: "no VXLAN device for VNI 43", summary: "A device for VNI 43 is on that port now (vx43 (VNI 43, port 4789, dev eth1))",
			fix: "ip -d link show vx43", confidence: "medium"},
		{name: "VNI not found, replay", class: "vxlan-vni", v: verdictOf(nil, nil, vxlanDropped("VXLAN_VNI_NOT_FOUND", "vxlan_rcv+0x8c")),
			cause: "no VXLAN device for the packet's VNI", summary: "The trace does not carry the VNI", confidence: "medium"},
		{name: "receive buffer full", class: "socket-rcvbuf",
			v:     verdictOf(miscFacts{socks: []Socket{rcvSock}}, nil, rcv),
			cause: "receive buffer full on UDP port 7002", summary: "held by dnsd(42)", evidence: "UDP socket *:7002=udp UNCONN *:7002 users:dnsd(42): rcvbuf 8192 bytes, 6912 in use, 27 drops",
			fix: "make dnsd(42) read faster", confidence: "high"},
		{name: "receive buffer full, no reason", class: "socket-rcvbuf",
			v:     verdictOf(miscFacts{socks: []Socket{rcvSock}}, nil, dropped(trace.Request, "eth0", "", "udp_queue_rcv_one_skb+0x437", udp(podIP, extIP, 7002))),
			cause: "receive buffer full on UDP port 7002", summary: "the kernel gives no specific drop reason here", confidence: "medium"},
		{name: "receive buffer full, NOT_SPECIFIED", class: "socket-rcvbuf",
			v:     verdictOf(miscFacts{socks: []Socket{rcvSock}}, nil, dropped(trace.Request, "eth0", "NOT_SPECIFIED", "udp_queue_rcv_one_skb+0x437", udp(podIP, extIP, 7002))),
			cause: "receive buffer full on UDP port 7002", summary: "the kernel gives no specific drop reason here", confidence: "medium"},
		{name: "receive buffer full, socket gone", class: "socket-rcvbuf", v: verdictOf(miscFacts{}, nil, rcv),
			cause: "receive buffer full on UDP port 7002", evidence: "UDP socket on port 7002=none now", fix: "SO_RCVBUF", confidence: "medium"},
		{name: "listen overflow", class: "listen-overflow",
			v: verdictOf(miscFacts{socks: []Socket{{Proto: "tcp", State: "LISTEN", Local: netip.MustParseAddrPort("0.0.0.0:80"), RecvQ: 129, SendQ: 128, Procs: []string{"nginx(3)"}}}}, nil,
				dropped(trace.Request, "eth0", "TCP_LISTEN_OVERFLOW", "tcp_v4_syn_recv_sock+0x1", tcp(podIP, extIP, 80))),
			cause: "accept queue full on TCP port 80 (backlog 128)", summary: "held by nginx(3)", evidence: "129 waiting to be accepted, backlog 128", fix: "somaxconn", confidence: "high"},
		{name: "u32 filter on a bridge", class: "tc-program",
			v:     verdictOf(miscFacts{kind: "bridge", filters: []TCFilter{u32}}, nil, tcDrop),
			cause: "tc ingress filter u32 on br0 (pref 10)", summary: "(a bridge device)", evidence: "tc ingress filter on br0 (bridge)=filter protocol ip pref 10 u32",
			fix: "tc filter del dev br0 ingress pref 10", confidence: "high"},
		{name: "two dropping filters: not sure which", class: "tc-program",
			v:     verdictOf(miscFacts{kind: "bridge", filters: []TCFilter{u32, u32}}, nil, tcDrop),
			cause: "tc ingress filter u32 on br0", summary: "one of 2 filters there that drop", confidence: "medium"},
		{name: "BPF program and a filter: the program is the cause, the filter evidence", class: "tc-program",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{progs: []Program{{Name: "policy", Kind: "tcx", Direction: "ingress", ID: 3}}}, kind: "bridge", filters: []TCFilter{u32}}, nil, tcDrop),
			cause: "tc ingress program policy on br0", evidence: "tc ingress filter on br0 (bridge)=", confidence: "high"},
		{name: "tc filters unreadable", class: "tc-program", v: verdictOf(miscFacts{fail: failed}, nil, tcDrop),
			cause: "tc ingress program on br0", evidence: "tc ingress filters on br0=netns gone", fix: "tc filter show dev br0 ingress"},
	}
	for _, c := range cases {
		t.Run(c.name, c.check)
	}
}

// Kernels before 5.17 give no reason: the node's state settles the class, with medium
// confidence, or the verdict says what it cannot tell apart.
func TestMiscClassesWithoutReasons(t *testing.T) {
	req := icmp(podIP, extIP)
	noReason := func(dev, loc string, h *trace.Headers) trace.Packet { return dropped(trace.Request, dev, "", loc, h) }
	closedUDP := noReason("eth0", "__udp4_lib_rcv+0x2a0", udp(podIP, extIP, 7001))
	input := noReason("veth-pod", "ip_rcv_finish_core.constprop.0+0x1a0", req)
	localnet := noReason("veth-pod", "ip_rcv_finish_core.constprop.0+0x1a0", icmp(podIP, netip.MustParseAddr("127.0.0.1")))
	off := map[string]string{"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.veth-pod.rp_filter": "0",
		"net.ipv4.conf.all.accept_local": "0", "net.ipv4.conf.veth-pod.accept_local": "0",
		"net.ipv4.conf.all.route_localnet": "0", "net.ipv4.conf.veth-pod.route_localnet": "0"}
	strict := map[string]string{}
	for k, v := range off {
		strict[k] = v
	}
	strict["net.ipv4.conf.all.rp_filter"] = "1"
	u32 := TCFilter{Kind: "u32", Pref: 10, Drops: true, Text: "filter protocol ip pref 10 u32 ... action gact drop"}
	cases := []miscCase{
		{name: "nothing bound: no socket", class: "no-socket", v: verdictOf(miscFacts{}, nil, closedUDP),
			cause: "port unreachable: nothing listens on UDP port 7001", summary: "nothing is bound to udp port 7001 here", confidence: "medium"},
		{name: "a socket bound: not settled", class: "kernel-reason",
			v:     verdictOf(miscFacts{socks: []Socket{{Proto: "udp", State: "UNCONN", Local: netip.MustParseAddrPort("0.0.0.0:7001")}}}, nil, closedUDP),
			cause: "no socket or a bad checksum", summary: "a bad checksum (or a socket filter) is likelier", fix: "nstat -az UdpNoPorts", confidence: "medium"},
		{name: "a full listener: listen overflow", class: "listen-overflow",
			v:     verdictOf(miscFacts{socks: []Socket{{Proto: "tcp", State: "LISTEN", Local: netip.MustParseAddrPort("0.0.0.0:80"), RecvQ: 1, SendQ: 0}}}, nil, noReason("eth0", "tcp_v4_rcv+0x1a0", tcp(podIP, extIP, 80))),
			cause: "accept queue full on TCP port 80 (backlog 0)", summary: "this listener's queue is full now", confidence: "medium"},
		{name: "replay: not settled", class: "kernel-reason", v: verdictOf(nil, nil, closedUDP),
			cause: "no socket or a bad checksum", summary: "could not be read", confidence: "medium"},
		{name: "VXLAN with its device there: a bad checksum", class: "checksum",
			v:     verdictOf(miscFacts{vxlans: []VXLANDevice{{Name: "vx0", VNI: 1, Port: 4789}}}, nil, vxlanDropped("", "__udp4_lib_rcv+0x2a0")),
			cause: "bad outer UDP checksum on VXLAN", summary: "a VXLAN device here takes UDP port 4789", confidence: "medium"},
		{name: "VXLAN with no device: no socket", class: "no-socket",
			v:     verdictOf(miscFacts{}, nil, vxlanDropped("", "__udp4_lib_rcv+0x2a0")),
			cause: "no VXLAN device on UDP port 4789", summary: "no VXLAN device here takes UDP port 4789", confidence: "medium"},
		{name: "rp_filter shown by the node", class: "rp-filter",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: strict}, back: "10.0.1.2 via 10.0.2.2 dev veth-ext"}, nil, input),
			cause: "reverse-path filter (strict) on veth-pod", summary: "rp_filter is on while the route back", fix: "rp_filter=2", confidence: "medium"},
		{name: "local source shown by the node", class: "martian-source",
			v:     verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: off}, owner: [2]string{"lo", "10.0.1.2/32"}}, nil, input),
			cause: "source address is local", fix: "ip addr del 10.0.1.2/32 dev lo", confidence: "medium"},
		{name: "127/8 destination", class: "martian-localnet", v: verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: off}}, nil, localnet),
			cause: "127.0.0.1 destination from veth-pod", fix: "route_localnet=1", confidence: "medium"},
		{name: "nothing shown", class: "kernel-reason", v: verdictOf(miscFacts{fakeFacts: fakeFacts{sysctl: off}}, nil, input),
			cause: "refused by the IPv4 input route", fix: "log_martians=1", confidence: "medium"},
		{name: "u32 filter, no program", class: "tc-program-inferred",
			v:     verdictOf(miscFacts{kind: "bridge", filters: []TCFilter{u32}}, nil, noReason("br0", "__netif_receive_skb_core+0x56b", req)),
			cause: "tc ingress filter u32 on br0 (pref 10)", summary: "the kernel gives no specific drop reason here", confidence: "medium"},
	}
	for _, c := range cases {
		t.Run(c.name, c.check)
	}
}
