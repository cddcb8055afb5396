package assemble

import (
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

const (
	skbX = 0xffff888100001000
	skbY = 0xffff888100002000
	skbZ = 0xffff888100003000
)

var (
	req  = echo("10.0.1.2", "172.16.0.2")
	rep  = echo("172.16.0.2", "10.0.1.2")
	ping = icmpFilter("10.0.1.2", "172.16.0.2")
)

func TestAdd(t *testing.T) {
	tests := []struct {
		name   string
		filter trace.Filter
		opts   Options
		events []trace.Event
		want   []want
		stats  Stats // Completed is not compared
	}{{
		name: "no free before the end of the run: unknown where it was last seen",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", req),
			route(0, 12, "node", "10.0.1.2", "172.16.0.2"),
		},
		want: []want{{"#1 request unknown node/vethpod", "received@node/vethpod route@node:main"}},
	}, {
		name: "no free after sending on a NIC: left the host",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", req),
			ev(skbX, 0, 20, trace.KindQueue, "node/eth0", req),
			ev(skbX, 0, 21, trace.KindXmit, "node/eth0", req),
		},
		want: []want{{"#1 request left-host node/eth0", "received@node/vethpod queued@node/eth0 xmit@node/eth0"}},
	}, {
		name: "consumed after its last receive: delivered there",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindQueue, "node/lo", req),
			ev(skbX, 0, 11, trace.KindXmit, "node/lo", req),
			ev(skbX, 0, 15, trace.KindReceive, "node/lo", req),
			consumed(skbX, 0, 20, "node", req, "tcp_v4_rcv+0x12"),
		},
		want: []want{{"#1 request delivered tcp_v4_rcv+0x12 node/lo",
			"queued@node/lo xmit@node/lo received@node/lo consumed@node"}},
	}, {
		name: "address reused after a free is a new packet",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindQueue, "pod/eth0", req),
			ev(skbX, 0, 11, trace.KindXmit, "pod/eth0", req),
			ev(skbX, 0, 15, trace.KindReceive, "ext/eth0", req),
			consumed(skbX, 0, 20, "ext/eth0", req, "icmp_rcv+0x1fb"),
			ev(skbX, 0, 30, trace.KindQueue, "ext/eth0", rep),
			ev(skbX, 0, 31, trace.KindXmit, "ext/eth0", rep),
			ev(skbX, 0, 35, trace.KindReceive, "pod/eth0", rep),
			consumed(skbX, 0, 40, "pod/eth0", rep, "icmp_rcv+0x1fb"),
		},
		want: []want{
			{"#1 request delivered icmp_rcv+0x1fb ext/eth0", "queued@pod/eth0 xmit@pod/eth0 received@ext/eth0 consumed@ext/eth0"},
			{"#2 reply delivered icmp_rcv+0x1fb pod/eth0", "queued@ext/eth0 xmit@ext/eth0 received@pod/eth0 consumed@pod/eth0"},
		},
	}, {
		name: "drop without a device: the latest device in its netns",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindXmit, "pod/eth0", req),
			ev(skbX, 0, 15, trace.KindReceive, "node/vethpod", req),
			route(0, 16, "node", "10.0.1.2", "172.16.0.2"),
			dropped(skbX, 0, 20, "node", req, "NETFILTER_DROP", "nf_hook_slow+0x95"),
			ev(skbY, 0, 30, trace.KindXmit, "pod/eth0", req),
			dropped(skbY, 0, 35, "node", req, "NO_SOCKET", "x+0x1"),
		},
		want: []want{
			{"#1 request dropped NETFILTER_DROP nf_hook_slow+0x95 node/vethpod",
				"xmit@pod/eth0 received@node/vethpod route@node:main dropped@node"},
			// pod's eth0 is not where it died: no device rather than a wrong one
			{"#2 request dropped NO_SOCKET x+0x1 node/", "xmit@pod/eth0 dropped@node"},
		},
	}, {
		name: "a free with nothing before it is still a packet",
		events: []trace.Event{
			dropped(skbX, 1, 10, "node/eth0", rep, "TCP_INVALID_SEQUENCE", "tcp_validate_incoming+0x1c"),
		},
		want: []want{{"#1 reply dropped TCP_INVALID_SEQUENCE tcp_validate_incoming+0x1c node/eth0", "dropped@node/eth0"}},
	}, {
		name: "route goes to the packet on its own CPU, not the latest one",
		events: []trace.Event{
			ev(skbX, 0, 100, trace.KindReceive, "node/vethpod", req),
			ev(skbY, 1, 101, trace.KindReceive, "node/vethpod", req),
			route(0, 102, "node", "10.0.1.2", "172.16.0.2"),
			route(1, 103, "node", "10.0.1.2", "172.16.0.2"),
			ev(skbY, 1, 104, trace.KindQueue, "node/vethext", req),
			ev(skbX, 0, 105, trace.KindQueue, "node/eth0", req),
			route(1, 106, "node", "10.0.1.2", "172.16.0.2"),
			dropped(skbX, 0, 110, "node/eth0", req, "QDISC_DROP", "__dev_queue_xmit+0x1"),
			dropped(skbY, 1, 111, "node/vethext", req, "QDISC_DROP", "__dev_queue_xmit+0x1"),
		},
		want: []want{
			{"#1 request dropped QDISC_DROP __dev_queue_xmit+0x1 node/eth0",
				"received@node/vethpod route@node:main queued@node/eth0 dropped@node/eth0"},
			{"#2 request dropped QDISC_DROP __dev_queue_xmit+0x1 node/vethext",
				"received@node/vethpod route@node:main queued@node/vethext route@node:main dropped@node/vethext"},
		},
	}, {
		name: "route needs the looked-up addresses; an unset source matches any",
		events: []trace.Event{
			ev(skbX, 0, 100, trace.KindReceive, "node/vethext", rep),
			route(0, 101, "node", "10.0.1.2", "172.16.0.2"), // the other direction: not this packet's
			route(0, 102, "node", "0.0.0.0", "10.0.1.2"),
			route(0, 103, "node", "172.16.0.2", "10.0.1.2"),
			route(0, 104, "node", "172.16.0.9", "10.0.1.2"),
			consumed(skbX, 0, 110, "node/vethext", rep, "icmp_rcv+0x1fb"),
		},
		want: []want{{"#1 reply delivered icmp_rcv+0x1fb node/vethext",
			"received@node/vethext route@node:main route@node:main consumed@node/vethext"}},
		stats: Stats{RoutesUnmatched: 2},
	}, {
		name: "route whose lookup names another protocol is not the packet's; any protocol matches",
		events: []trace.Event{
			// iputils' ping connects a UDP socket to pick its source address, then sends
			lookupProto(route(0, 100, "pod", "10.0.1.2", "172.16.0.2"), trace.ProtoUDP),
			ev(skbX, 0, 150, trace.KindQueue, "pod/eth0", req),
			lookupProto(route(0, 160, "pod", "10.0.1.2", "172.16.0.2"), trace.ProtoUDP),
			lookupProto(route(0, 170, "pod", "10.0.1.2", "172.16.0.2"), trace.ProtoAny),
			ev(skbX, 0, 171, trace.KindXmit, "pod/eth0", req),
		},
		want:  []want{{"#1 request left-host pod/eth0", "queued@pod/eth0 route@pod:main xmit@pod/eth0"}},
		stats: Stats{RoutesUnmatched: 2},
	}, {
		name: "route before the first hop waits for its packet on that CPU",
		events: []trace.Event{
			route(2, 1000, "pod", "0.0.0.0", "172.16.0.2"), // too long before the packet
			route(1, 2900, "pod", "0.0.0.0", "172.16.0.2"), // another CPU
			route(2, 3000, "pod", "0.0.0.0", "172.16.0.2"),
			ev(skbX, 2, 3050, trace.KindQueue, "pod/eth0", req),
			ev(skbX, 2, 3051, trace.KindXmit, "pod/eth0", req),
			ev(skbX, 2, 3060, trace.KindReceive, "ext/eth0", req),
			consumed(skbX, 2, 3070, "ext/eth0", req, "icmp_rcv+0x1fb"),
		},
		want: []want{{"#1 request delivered icmp_rcv+0x1fb ext/eth0",
			"route@pod:main queued@pod/eth0 xmit@pod/eth0 received@ext/eth0 consumed@ext/eth0"}},
		stats: Stats{RoutesUnmatched: 2},
	}, {
		name: "a waiting route outlives events of another CPU delivered ahead of its own",
		events: []trace.Event{
			route(2, 1000, "pod", "0.0.0.0", "172.16.0.2"),
			ev(skbY, 0, 9000, trace.KindReceive, "node/eth0", rep),
			ev(skbX, 2, 1050, trace.KindQueue, "pod/eth0", req),
		},
		want: []want{
			{"#1 request left-host pod/eth0", "route@pod:main queued@pod/eth0"},
			{"#2 reply unknown node/eth0", "received@node/eth0"},
		},
	}, {
		name: "an open packet idle on the CPU for long does not take a new packet's route",
		events: []trace.Event{
			ev(skbX, 0, 100, trace.KindQueue, "pod/eth0", req),
			route(0, 5000, "pod", "0.0.0.0", "172.16.0.2"),
			ev(skbY, 0, 5010, trace.KindQueue, "pod/eth0", req),
			consumed(skbY, 0, 5020, "pod/eth0", req, "e1000_clean_tx_irq+0x10c"),
		},
		want: []want{
			{"#1 request left-host pod/eth0", "route@pod:main queued@pod/eth0 consumed@pod/eth0"},
			{"#2 request left-host pod/eth0", "queued@pod/eth0"},
		},
	}, {
		name:   "route looked up after DNAT waits for the hop that shows the new address",
		filter: trace.Filter{Src: ping.Src, Proto: trace.ProtoICMP},
		events: []trace.Event{
			ev(skbX, 0, 100, trace.KindReceive, "node/vethpod", echo("10.0.1.2", "10.96.0.10")),
			route(0, 102, "node", "10.0.1.2", "172.16.0.2"),
			ev(skbX, 0, 110, trace.KindQueue, "node/vethext", req),
			dropped(skbX, 0, 120, "node/vethext", req, "QDISC_DROP", "__dev_queue_xmit+0x1"),
		},
		want: []want{{"#1 request dropped QDISC_DROP __dev_queue_xmit+0x1 node/vethext",
			"received@node/vethpod route@node:main queued@node/vethext dropped@node/vethext"}},
	}, {
		name:   "headers the filter never named: direction from a later hop",
		filter: icmpFilter("10.0.1.2", "8.8.8.8"),
		events: []trace.Event{
			ev(skbX, 0, 100, trace.KindReceive, "node/eth0", echo("8.8.8.8", "192.168.1.10")),
			ev(skbX, 0, 110, trace.KindQueue, "node/vethpod", echo("8.8.8.8", "10.0.1.2")),
			ev(skbX, 0, 111, trace.KindXmit, "node/vethpod", echo("8.8.8.8", "10.0.1.2")),
			ev(skbX, 0, 120, trace.KindReceive, "pod/eth0", echo("8.8.8.8", "10.0.1.2")),
			consumed(skbX, 0, 130, "pod/eth0", echo("8.8.8.8", "10.0.1.2"), "icmp_rcv+0x1fb"),
		},
		want: []want{{"#1 reply delivered icmp_rcv+0x1fb pod/eth0",
			"received@node/eth0 queued@node/vethpod xmit@node/vethpod received@pod/eth0 consumed@pod/eth0"}},
	}, {
		name: "two CPUs delivered out of time order",
		events: []trace.Event{
			ev(skbX, 0, 1000, trace.KindReceive, "node/vethpod", req),
			ev(skbY, 1, 1010, trace.KindReceive, "node/vethpod", req),
			ev(skbY, 1, 1030, trace.KindQueue, "node/eth0", req),
			ev(skbX, 0, 1020, trace.KindQueue, "node/vethext", req),
			route(1, 1031, "node", "10.0.1.2", "172.16.0.2"),
			// X crossed to CPU 1 through the veth backlog; CPU 1's events came first
			ev(skbX, 1, 1060, trace.KindReceive, "ext/eth0", req),
			ev(skbX, 0, 1040, trace.KindXmit, "node/vethext", req),
			dropped(skbY, 1, 1050, "node/eth0", req, "QDISC_DROP", "__dev_queue_xmit+0x1"),
			consumed(skbX, 1, 1070, "ext/eth0", req, "icmp_rcv+0x1fb"),
		},
		want: []want{
			{"#1 request dropped QDISC_DROP __dev_queue_xmit+0x1 node/eth0",
				"received@node/vethpod queued@node/eth0 route@node:main dropped@node/eth0"},
			{"#2 request delivered icmp_rcv+0x1fb ext/eth0",
				"received@node/vethpod queued@node/vethext xmit@node/vethext received@ext/eth0 consumed@ext/eth0"},
		},
	}, {
		name: "a hop delivered after its packet's free is not a new packet",
		events: []trace.Event{
			ev(skbX, 1, 120, trace.KindReceive, "ext/eth0", req),
			consumed(skbX, 1, 130, "ext/eth0", req, "icmp_rcv+0x1fb"),
			ev(skbX, 0, 110, trace.KindXmit, "node/vethext", req),
			ev(skbX, 0, 200, trace.KindQueue, "ext/eth0", rep),
		},
		want: []want{
			{"#1 request delivered icmp_rcv+0x1fb ext/eth0", "received@ext/eth0 consumed@ext/eth0"},
			{"#2 reply left-host ext/eth0", "queued@ext/eth0"},
		},
		stats: Stats{Stragglers: 1},
	}, {
		name: "open packets past the cap: the least recently active is completed",
		opts: Options{MaxOpen: 2},
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", req),
			ev(skbY, 0, 20, trace.KindReceive, "node/vethpod", req),
			ev(skbX, 0, 30, trace.KindQueue, "node/vethext", req),
			ev(skbZ, 0, 40, trace.KindReceive, "node/vethpod", req),
		},
		want: []want{
			{"#1 request unknown node/vethpod", "received@node/vethpod"},
			{"#2 request left-host node/vethext", "received@node/vethpod queued@node/vethext"},
			{"#3 request unknown node/vethpod", "received@node/vethpod"},
		},
		stats: Stats{Evicted: 1},
	}, {
		name: "hops past the cap: the start and the end are kept",
		opts: Options{MaxHops: 4},
		events: func() []trace.Event {
			// a routing loop between two namespaces until the TTL runs out
			var evs []trace.Event
			for i := range uint64(3) {
				evs = append(evs,
					ev(skbX, 0, 10*i+1, trace.KindXmit, "node/vethext", req),
					ev(skbX, 0, 10*i+2, trace.KindReceive, "ext/eth0", req),
					ev(skbX, 0, 10*i+3, trace.KindXmit, "ext/eth0", req),
				)
			}
			return append(evs, dropped(skbX, 0, 99, "ext/eth0", req, "IP_INHDR", "ip_forward+0x1a"))
		}(),
		want: []want{{"#1 request dropped IP_INHDR ip_forward+0x1a ext/eth0",
			"xmit@node/vethext received@ext/eth0 xmit@ext/eth0 dropped@ext/eth0"}},
		stats: Stats{HopsCut: 6},
	}, {
		name: "a lone free with an open packet's headers in its netns is a copy of it",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", with(req, func(h *trace.Headers) { h.TTL = 64 })),
			// the neighbour code's clone, taken after ip_forward decremented the TTL
			consumed(skbY, 0, 12, "node/vethext", with(req, func(h *trace.Headers) { h.TTL = 63 }), "__neigh_event_send+0x236"),
			ev(skbX, 0, 13, trace.KindQueue, "node/vethext", req),
			ev(skbX, 0, 14, trace.KindXmit, "node/vethext", req),
			ev(skbX, 0, 20, trace.KindReceive, "ext/eth0", req),
			consumed(skbX, 0, 25, "ext/eth0", req, "icmp_rcv+0x1fb"),
		},
		want: []want{{"#1 request delivered icmp_rcv+0x1fb ext/eth0",
			"received@node/vethpod consumed@node/vethext queued@node/vethext xmit@node/vethext received@ext/eth0 consumed@ext/eth0"}},
		stats: Stats{Copies: 1},
	}, {
		name: "a lone free in another netns or with other headers is a packet of its own",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", req),
			consumed(skbY, 0, 12, "ext/eth0", req, "x+0x1"),
			consumed(skbZ, 0, 13, "node/vethpod", with(req, func(h *trace.Headers) { h.ICMPSeq = 2 }), "x+0x1"),
		},
		want: []want{
			{"#1 request delivered x+0x1 ext/eth0", "consumed@ext/eth0"},
			{"#2 request delivered x+0x1 node/vethpod", "consumed@node/vethpod"},
			{"#3 request unknown node/vethpod", "received@node/vethpod"},
		},
	}, {
		name: "NO_SOCKET with a copy a socket read before the drop: delivered",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "pod/eth0", rep),
			consumed(skbY, 1, 12, "pod", rep, "raw_recvmsg+0xac"),
			dropped(skbX, 0, 15, "pod/eth0", rep, "NO_SOCKET", "ping_rcv+0xab"),
		},
		want: []want{{"#1 reply delivered raw_recvmsg+0xac pod/eth0",
			"received@pod/eth0 consumed@pod dropped@pod/eth0"}},
		stats: Stats{Copies: 1},
	}, {
		name: "NO_SOCKET with only a packet socket's or a dropped copy: still dropped",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "pod/eth0", rep),
			consumed(skbY, 0, 12, "pod/eth0", rep, "tpacket_rcv+0x2f4"), // tcpdump
			dropped(skbX, 0, 15, "pod/eth0", rep, "NO_SOCKET", "ping_rcv+0xab"),
			dropped(skbZ, 0, 16, "pod", rep, "SOCKET_RCVBUFF", "sock_queue_rcv_skb_reason+0x3a"),
		},
		want: []want{{"#1 reply dropped NO_SOCKET ping_rcv+0xab pod/eth0",
			"received@pod/eth0 consumed@pod/eth0 dropped@pod/eth0 dropped@pod"}},
		stats: Stats{Copies: 2},
	}, {
		name: "a copy a socket read in another netns leaves NO_SOCKET a drop",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "node/vethext", rep),
			consumed(skbY, 0, 11, "node", rep, "raw_recvmsg+0xac"),
			ev(skbX, 0, 12, trace.KindXmit, "node/vethpod", rep),
			ev(skbX, 0, 14, trace.KindReceive, "pod/eth0", rep),
			dropped(skbX, 0, 15, "pod/eth0", rep, "NO_SOCKET", "ping_rcv+0xab"),
		},
		want: []want{{"#1 reply dropped NO_SOCKET ping_rcv+0xab pod/eth0",
			"received@node/vethext consumed@node xmit@node/vethpod received@pod/eth0 dropped@pod/eth0"}},
		stats: Stats{Copies: 1},
	}, {
		name: "a drop other than NO_SOCKET stays a drop whatever its copies",
		events: []trace.Event{
			ev(skbX, 0, 10, trace.KindReceive, "pod/eth0", rep),
			consumed(skbY, 0, 12, "pod", rep, "raw_recvmsg+0xac"),
			dropped(skbX, 0, 15, "pod/eth0", rep, "NETFILTER_DROP", "nf_hook_slow+0x95"),
			// handed out at its drop: a later lone free is no longer its copy
			consumed(skbZ, 0, 16, "pod", rep, "raw_recvmsg+0xac"),
		},
		want: []want{
			{"#1 reply dropped NETFILTER_DROP nf_hook_slow+0x95 pod/eth0", "received@pod/eth0 consumed@pod dropped@pod/eth0"},
			{"#2 reply delivered raw_recvmsg+0xac pod/", "consumed@pod"},
		},
		stats: Stats{Copies: 1},
	}, {
		name: "an event without an sk_buff that is no route is ignored",
		events: []trace.Event{
			ev(0, 0, 10, trace.KindReceive, "node/eth0", req),
		},
		stats: Stats{Orphans: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.filter
			if f == (trace.Filter{}) {
				f = ping
			}
			a := New(f, tt.opts)
			got := append(addAll(a, tt.events), a.Flush()...)
			check(t, got, tt.want)
			s := a.Stats()
			s.Completed = 0
			if s != tt.stats {
				t.Errorf("stats %+v, want %+v", s, tt.stats)
			}
		})
	}
}

func TestAddReturnsWhatItCompleted(t *testing.T) {
	a := New(ping, Options{MaxOpen: 1})
	if got := a.Add(ev(skbX, 0, 10, trace.KindReceive, "node/vethpod", req)); len(got) != 0 {
		t.Fatalf("a first hop completed %d packets", len(got))
	}
	// Y needs X's slot and frees at once: both complete, the evicted one first.
	got := a.Add(dropped(skbY, 0, 20, "node/vethpod", rep, "NETFILTER_DROP", "x+0x1"))
	if len(got) != 2 || got[0].ID != 1 || got[0].Fate.Outcome != trace.Unknown ||
		got[1].ID != 2 || got[1].Fate.Outcome != trace.Dropped {
		t.Fatalf("got %v", got)
	}
}

func TestExpire(t *testing.T) {
	const s = uint64(1e9)
	a := New(ping, Options{})
	// Other packets of the flow: their own IP IDs, or they would be taken for clones.
	reqY := with(req, func(h *trace.Headers) { h.IPID = 2 })
	reqZ := with(req, func(h *trace.Headers) { h.IPID = 3 })
	addAll(a, []trace.Event{
		ev(skbX, 0, 1*s/us, trace.KindReceive, "node/vethpod", req),
		ev(skbY, 0, 2*s/us, trace.KindReceive, "node/vethpod", reqY),
		ev(skbZ, 0, 2*s/us+1, trace.KindQueue, "node/eth0", reqZ),
		ev(skbX, 0, 2*s/us+500_000, trace.KindQueue, "node/vethext", req), // X active again
	})
	if got := a.Expire(4*s + 400_000_000); len(got) != 2 {
		t.Fatalf("at 4.4s: %d expired, want Y and Z", len(got))
	} else {
		check(t, got, []want{
			{"#1 request unknown node/vethpod", "received@node/vethpod"},
			{"#2 request left-host node/eth0", "queued@node/eth0"},
		})
	}
	if got := a.Expire(4*s + 400_000_000); len(got) != 0 {
		t.Errorf("expired twice")
	}
	got := a.Expire(5 * s)
	check(t, got, []want{{"#3 request left-host node/vethext", "received@node/vethpod queued@node/vethext"}})

	a = New(ping, Options{Idle: 10 * 1e6})
	a.Add(ev(skbX, 0, 0, trace.KindReceive, "node/vethpod", req))
	if got := a.Expire(20e6); len(got) != 1 {
		t.Errorf("Options.Idle 10ms: %d expired after 20ms", len(got))
	}
}
