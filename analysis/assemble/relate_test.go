package assemble

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func tcp(src string, sport uint16, dst string, dport uint16, seq uint32, flags trace.TCPFlags, payload uint16, ipid uint16) *trace.Headers {
	return &trace.Headers{Tuple: trace.Tuple{
		Proto: trace.ProtoTCP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Sport: sport, Dport: dport,
	}, TCPSeq: seq, TCPFlags: flags, Payload: payload, IPID: ipid, TTL: 64}
}

// A bridge flooding a frame clones it for every port: the clone is a packet of its own that
// names the one it copies, even when it is handed out first.
func TestCloneNamesItsOriginal(t *testing.T) {
	f := icmpFilter("10.0.1.2", "10.0.1.3")
	req := echo("10.0.1.2", "10.0.1.3")
	a := New(f, Options{})
	out := addAll(a, []trace.Event{
		ev(skbX, 0, 1000, trace.KindReceive, "node/vethpod0", req),
		ev(skbY, 0, 1002, trace.KindQueue, "node/vethpod2", req), // the flood's clone
		dropped(skbY, 0, 1004, "pod", req, "OTHERHOST", "ip_rcv_core+0x1"),
		ev(skbX, 0, 1003, trace.KindQueue, "node/vethpod1", req),
		consumed(skbX, 0, 1010, "pod/eth0", req, "icmp_rcv+0x259"),
	})
	if len(out) != 2 {
		t.Fatalf("%d packets, want the original and its clone", len(out))
	}
	clone, orig := out[0], out[1]
	if clone.CopyOf != orig.ID || orig.CopyOf != 0 || clone.ID == orig.ID {
		t.Errorf("clone #%d copy_of=%d, original #%d copy_of=%d", clone.ID, clone.CopyOf, orig.ID, orig.CopyOf)
	}
	if s := Summarize(f, out); len(s) != 1 || s[0].Copies != 1 {
		t.Errorf("summary %+v, want one flow with one clone", s)
	}
}

func TestRetransmissionNamesTheFirst(t *testing.T) {
	f := trace.Filter{Proto: trace.ProtoTCP}
	syn := tcp("10.0.1.2", 40000, "10.0.2.2", 80, 100, 0x02, 0, 1)
	synAgain := tcp("10.0.1.2", 40000, "10.0.2.2", 80, 100, 0x02, 0, 2) // new IP ID: not a clone
	ack := tcp("10.0.1.2", 40000, "10.0.2.2", 80, 101, 0x10, 0, 3)
	ackAgain := tcp("10.0.1.2", 40000, "10.0.2.2", 80, 101, 0x10, 0, 4) // pure ACKs repeat: no retransmission
	a := New(f, Options{})
	out := addAll(a, []trace.Event{
		ev(skbX, 0, 1000, trace.KindQueue, "pod/eth0", syn),
		dropped(skbX, 0, 1001, "node/vethpod", syn, "NETFILTER_DROP", "nf_hook_slow+0x1"),
		ev(skbY, 0, 1_001_000, trace.KindQueue, "pod/eth0", synAgain),
		consumed(skbY, 0, 1_001_010, "ext/eth0", synAgain, "tcp_v4_rcv+0x1"),
		ev(skbX, 0, 1_002_000, trace.KindQueue, "pod/eth0", ack),
		consumed(skbX, 0, 1_002_010, "ext/eth0", ack, "tcp_v4_rcv+0x1"),
		ev(skbY, 0, 1_003_000, trace.KindQueue, "pod/eth0", ackAgain),
		consumed(skbY, 0, 1_003_010, "ext/eth0", ackAgain, "tcp_v4_rcv+0x1"),
	})
	if len(out) != 4 {
		t.Fatalf("%d packets, want 4", len(out))
	}
	if out[1].RetransmitOf != out[0].ID {
		t.Errorf("second SYN retransmit_of=%d, want #%d", out[1].RetransmitOf, out[0].ID)
	}
	for _, p := range []trace.Packet{out[0], out[2], out[3]} {
		if p.RetransmitOf != 0 || p.CopyOf != 0 {
			t.Errorf("#%d retransmit_of=%d copy_of=%d, want neither", p.ID, p.RetransmitOf, p.CopyOf)
		}
	}
	if s := Summarize(f, out); len(s) != 1 || s[0].Retransmissions != 1 {
		t.Errorf("summary %+v, want one flow with one retransmission", s)
	}
}

// A clone made at tc ingress (mirred) is seen between its original's receive and the original's
// forwarding lookup: the lookup still belongs to the packet received on its input device, and a
// copy freed on the way out is not the clone's, which went out of the monitor port. On a slow
// CPU (a loaded VM) the lookup comes milliseconds after the receive, well after the clone's hops.
func TestIngressCloneTakesNothingOfItsOriginal(t *testing.T) {
	for _, c := range []struct {
		name  string
		scale uint64 // microseconds per step of the event times below
	}{{"fast", 1}, {"slow CPU", 1000}} {
		t.Run(c.name, func(t *testing.T) {
			at := func(e trace.Event, ifindex uint32) trace.Event {
				e.Hop.Ifindex = ifindex
				return e
			}
			step := func(n uint64) uint64 { return 1000 + n*c.scale }
			f := icmpFilter("10.0.1.2", "10.0.2.2")
			req := echo("10.0.1.2", "10.0.2.2")
			rt := route(0, step(3), "node", "10.0.1.2", "10.0.2.2")
			rt.Hop.Route.Iif = 2
			fwd := *req
			fwd.TTL = 63
			out := addAll(New(f, Options{}), []trace.Event{
				at(ev(skbX, 0, step(0), trace.KindReceive, "node/vethpod", req), 2),
				at(ev(skbY, 0, step(1), trace.KindQueue, "node/mon0", req), 4), // the clone
				at(ev(skbY, 0, step(2), trace.KindXmit, "node/mon0", req), 4),
				rt,
				at(consumed(skbZ, 0, step(4), "node/vethext", &fwd, "__neigh_event_send+0x236"), 3),
				at(dropped(skbY, 0, step(5), "mon/eth0", req, "OTHERHOST", "ip_rcv_core+0x1"), 5),
				at(ev(skbX, 0, step(6), trace.KindQueue, "node/vethext", &fwd), 3),
				at(consumed(skbX, 0, step(10), "ext/eth0", &fwd, "icmp_rcv+0x259"), 6),
			})
			if len(out) != 2 {
				t.Fatalf("%d packets, want the original and its clone", len(out))
			}
			clone, orig := out[0], out[1]
			if clone.CopyOf != orig.ID {
				t.Fatalf("clone #%d copy_of=%d, want #%d", clone.ID, clone.CopyOf, orig.ID)
			}
			if got := hopsOf(orig); got != "received@node/vethpod route@node:main consumed@node/vethext queued@node/vethext consumed@ext/eth0" {
				t.Errorf("original hops %s", got)
			}
			if got := hopsOf(clone); got != "queued@node/mon0 xmit@node/mon0 dropped@mon/eth0" {
				t.Errorf("clone hops %s", got)
			}
		})
	}
}
