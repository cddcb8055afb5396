package assemble

import (
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func TestFixtures(t *testing.T) {
	tests := []struct {
		file   string
		filter trace.Filter
		want   []want
		stats  Stats // Completed is len(want)
	}{{
		file:   "ping_forward.jsonl",
		filter: icmpFilter("10.0.1.2", "172.16.0.2"),
		want: []want{{
			"#1 request delivered icmp_rcv+0x1fb ext/eth0",
			"route@pod:local route@pod:main queued@pod/eth0 xmit@pod/eth0 " +
				"received@node/vethpod route@node:local route@node:main queued@node/vethext xmit@node/vethext " +
				"received@ext/eth0 route@ext:local consumed@ext/eth0",
		}, {
			"#2 reply delivered icmp_rcv+0x1fb pod/eth0",
			"route@ext:local route@ext:main queued@ext/eth0 xmit@ext/eth0 " +
				"received@node/vethext route@node:main queued@node/vethpod xmit@node/vethpod " +
				"received@pod/eth0 route@pod:local consumed@pod/eth0",
		}},
	}, {
		file:   "drop_ip_error.jsonl",
		filter: icmpFilter("10.0.1.2", "172.16.0.2"),
		want: func() []want {
			var ws []want
			for _, id := range []string{"1", "2", "3"} {
				ws = append(ws, want{
					"#" + id + " request dropped IP_INADDRERRORS ip_error+0x5a node/vethpod",
					"route@pod:local route@pod:main queued@pod/eth0 xmit@pod/eth0 " +
						"received@node/vethpod route@node:local route@node:main dropped@node/vethpod",
				})
			}
			return ws
		}(),
	}, {
		file:   "uplink_left_host.jsonl",
		filter: icmpFilter("10.0.1.2", "8.8.8.8"),
		want: []want{{
			"#1 request left-host node/eth0",
			"route@pod:main queued@pod/eth0 xmit@pod/eth0 received@node/vethpod route@node:main " +
				"queued@node/eth0 xmit@node/eth0 consumed@node/eth0",
		}, {
			"#2 reply delivered icmp_rcv+0x1fb pod/eth0",
			"route@node:main queued@node/vethpod xmit@node/vethpod received@pod/eth0 route@pod:local consumed@pod/eth0",
		}},
	}, {
		// iputils' ping over a raw socket. The node's neighbour code frees a clone of the
		// request while it forwards it, and in pod the reply is dropped by ping_rcv (no ping
		// socket) while the raw socket's clone of it is read by ping: both clones are hops,
		// not packets, and neither packet is a drop. The UDP lookup iputils makes to pick its
		// source address is not the echo's.
		file:   "ping_raw_socket_copy.jsonl",
		filter: icmpFilter("10.99.1.2", "10.99.2.2"),
		want: []want{{
			"#1 request delivered icmp_rcv+0x259 ext/eth0",
			"queued@pod/eth0 xmit@pod/eth0 received@node/veth-pod route@node:main consumed@node/veth-ext " +
				"queued@node/veth-ext xmit@node/veth-ext received@ext/eth0 consumed@ext/eth0",
		}, {
			"#2 reply delivered raw_recvmsg+0xac pod/eth0",
			"route@ext:local route@ext:main queued@ext/eth0 xmit@ext/eth0 " +
				"received@node/veth-ext route@node:main queued@node/veth-pod xmit@node/veth-pod " +
				"received@pod/eth0 route@pod:local dropped@pod/eth0 consumed@pod",
		}},
		stats: Stats{RoutesUnmatched: 1, Copies: 2},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			a := New(tt.filter, Options{})
			got := addAll(a, fixture(t, tt.file))
			if len(a.open) != 0 {
				t.Errorf("%d packets never freed", len(a.open))
			}
			// Packets held for a copy come out of the flush.
			got = append(got, a.Flush()...)
			check(t, got, tt.want)
			ws := tt.stats
			ws.Completed = len(tt.want)
			if s := a.Stats(); s != ws {
				t.Errorf("stats %+v, want %+v", s, ws)
			}
		})
	}
}

// The ping's first packet must carry the first hop's headers and be told apart from its reply
// by them, not by the order they were freed in.
func TestFixturePacketFields(t *testing.T) {
	got := Replay(icmpFilter("10.0.1.2", "172.16.0.2"), Options{}, fixture(t, "ping_forward.jsonl"))
	if len(got) != 2 {
		t.Fatalf("got %d packets", len(got))
	}
	req, rep := got[0], got[1]
	if req.Tuple.Src.String() != "10.0.1.2" || req.Tuple.TTL != 64 || req.Tuple.ICMPType != 8 {
		t.Errorf("request tuple %+v", req.Tuple)
	}
	if rep.Tuple.Src.String() != "172.16.0.2" || rep.Tuple.ICMPType != 0 {
		t.Errorf("reply tuple %+v", rep.Tuple)
	}
	if req.Fate.Netns != 4026532402 || req.Fate.NetnsName != "ext" {
		t.Errorf("request fate netns %+v", req.Fate)
	}
	for _, p := range got {
		for i := 1; i < len(p.Hops); i++ {
			if p.Hops[i].TimeNS < p.Hops[i-1].TimeNS {
				t.Errorf("#%d hop %d out of time order", p.ID, i)
			}
		}
	}
}
