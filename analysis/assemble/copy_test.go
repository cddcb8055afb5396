package assemble

import (
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

const ms = 1000 // µs, the unit of ev's times

// A packet dropped with NO_SOCKET is held back for copyWindowNS of event time, in case a copy
// of it turns up that a socket consumed; others are handed out at once.
func TestHeldForCopy(t *testing.T) {
	dns := trace.Filter{Proto: trace.ProtoUDP, Src: ping.Src, Dst: ping.Dst}
	closed := udp("10.0.1.2", 40000, "172.16.0.2", 9) // to a closed port in ext
	other := udp("10.0.1.2", 40001, "172.16.0.2", 53)

	a := New(dns, Options{})
	if got := a.Add(ev(skbX, 0, 1000, trace.KindReceive, "ext/eth0", closed)); len(got) != 0 {
		t.Fatalf("first hop: %d packets", len(got))
	}
	if got := a.Add(dropped(skbX, 0, 1005, "ext/eth0", closed, "NO_SOCKET", "__udp4_lib_rcv+0x8c1")); len(got) != 0 {
		t.Fatalf("NO_SOCKET drop handed out at once: %s", pkt(got[0]))
	}
	if got := a.Expire((1005 + 800*ms) * us); len(got) != 0 {
		t.Fatalf("handed out 800ms after its drop: %s", pkt(got[0]))
	}
	// Another packet completes meanwhile: out at once, and numbered first, as it is printed first.
	a.Add(ev(skbY, 0, 1005+900*ms, trace.KindReceive, "ext/eth0", other))
	got := a.Add(consumed(skbY, 0, 1005+902*ms, "ext/eth0", other, "udp_queue_rcv_one_skb+0x1a"))
	check(t, got, []want{{"#1 request delivered udp_queue_rcv_one_skb+0x1a ext/eth0", "received@ext/eth0 consumed@ext/eth0"}})

	got = a.Expire((1005+1000*ms)*us + 1)
	check(t, got, []want{{"#2 request dropped NO_SOCKET __udp4_lib_rcv+0x8c1 ext/eth0", "received@ext/eth0 dropped@ext/eth0"}})
	if got := a.Flush(); len(got) != 0 {
		t.Errorf("handed out twice: %s", pkt(got[0]))
	}

	// Released by the first event past the window, ahead of what that event completes.
	a = New(dns, Options{})
	a.Add(ev(skbX, 0, 1000, trace.KindReceive, "ext/eth0", closed))
	a.Add(dropped(skbX, 0, 1005, "ext/eth0", closed, "NO_SOCKET", "__udp4_lib_rcv+0x8c1"))
	got = a.Add(dropped(skbY, 3, 1005+1002*ms, "ext/eth0", other, "NETFILTER_DROP", "nf_hook_slow+0x95"))
	check(t, got, []want{
		{"#1 request dropped NO_SOCKET __udp4_lib_rcv+0x8c1 ext/eth0", "received@ext/eth0 dropped@ext/eth0"},
		{"#2 request dropped NETFILTER_DROP nf_hook_slow+0x95 ext/eth0", "dropped@ext/eth0"},
	})

	// No more held than MaxOpen: past it the oldest goes out early.
	a = New(dns, Options{MaxOpen: 1})
	a.Add(dropped(skbX, 0, 1000, "ext/eth0", closed, "NO_SOCKET", "__udp4_lib_rcv+0x8c1"))
	got = a.Add(dropped(skbY, 0, 1001, "ext/eth0", other, "NO_SOCKET", "__udp4_lib_rcv+0x8c1"))
	check(t, got, []want{{"#1 request dropped NO_SOCKET __udp4_lib_rcv+0x8c1 ext/eth0", "dropped@ext/eth0"}})
	check(t, a.Flush(), []want{{"#2 request dropped NO_SOCKET __udp4_lib_rcv+0x8c1 ext/eth0", "dropped@ext/eth0"}})
}

// A lone free more than copyWindowNS after the packet it copies is a packet of its own, and the
// original stays dropped.
func TestLateCopy(t *testing.T) {
	a := New(ping, Options{})
	a.Add(ev(skbX, 0, 1000, trace.KindReceive, "pod/eth0", rep))
	if got := a.Add(dropped(skbX, 0, 1005, "pod/eth0", rep, "NO_SOCKET", "ping_rcv+0xab")); len(got) != 0 {
		t.Fatalf("NO_SOCKET drop handed out at once: %s", pkt(got[0]))
	}
	got := a.Add(consumed(skbY, 0, 1005+1002*ms, "pod", rep, "raw_recvmsg+0xac"))
	check(t, got, []want{
		{"#1 reply dropped NO_SOCKET ping_rcv+0xab pod/eth0", "received@pod/eth0 dropped@pod/eth0"},
	})
	// The lone consume waits in turn for an original that might come after it; none does.
	check(t, a.Flush(), []want{
		{"#2 reply delivered raw_recvmsg+0xac pod/", "consumed@pod"},
	})
	if s := a.Stats(); s.Copies != 0 || s.Completed != 2 {
		t.Errorf("stats %+v", s)
	}

	// Within the window it is a copy, however late the application read it.
	a = New(ping, Options{})
	a.Add(ev(skbX, 0, 1000, trace.KindReceive, "pod/eth0", rep))
	a.Add(dropped(skbX, 0, 1005, "pod/eth0", rep, "NO_SOCKET", "ping_rcv+0xab"))
	if got := a.Add(consumed(skbY, 0, 1005+998*ms, "pod", rep, "raw_recvmsg+0xac")); len(got) != 0 {
		t.Fatalf("copy handed out %s", pkt(got[0]))
	}
	check(t, a.Expire((1005+1002*ms)*us), []want{
		{"#1 reply delivered raw_recvmsg+0xac pod/eth0", "received@pod/eth0 dropped@pod/eth0 consumed@pod"},
	})
}

// The recorded ping: the reply is held at its drop and comes out delivered once its window
// has passed, after the request.
func TestFixtureRawSocketCopyTiming(t *testing.T) {
	a := New(icmpFilter("10.99.1.2", "10.99.2.2"), Options{})
	evs := fixture(t, "ping_raw_socket_copy.jsonl")
	got := addAll(a, evs)
	check(t, got, []want{{"#1 request delivered icmp_rcv+0x259 ext/eth0",
		"queued@pod/eth0 xmit@pod/eth0 received@node/veth-pod route@node:main consumed@node/veth-ext " +
			"queued@node/veth-ext xmit@node/veth-ext received@ext/eth0 consumed@ext/eth0"}})
	last := evs[len(evs)-1].Hop.TimeNS
	if got := a.Expire(last + copyWindowNS - 100_000_000); len(got) != 0 {
		t.Fatalf("reply out early: %s", pkt(got[0]))
	}
	got = a.Expire(last + copyWindowNS + 100_000_000)
	if len(got) != 1 {
		t.Fatalf("got %d packets, want the reply", len(got))
	}
	r := got[0]
	if r.ID != 2 || r.Flow != trace.Reply || r.Fate.Outcome != trace.Delivered ||
		r.Fate.Location != "raw_recvmsg+0xac" || r.Fate.NetnsName != "pod" || r.Fate.Ifname != "eth0" {
		t.Errorf("reply %s %+v", pkt(r), r.Fate)
	}
	// The copy's hop is reported as the kernel reported it.
	h := r.Hops[len(r.Hops)-1]
	if h.Event != trace.KindConsume || h.Probe != "skb:consume_skb" || h.Location != "raw_recvmsg+0xac" {
		t.Errorf("copy hop %+v", h)
	}
}

// The neighbour code clones a locally generated packet waiting for ARP and frees the clone
// before the original shows up at its first transmit tracepoint: the clone is still a copy.
func TestEarlyCopy(t *testing.T) {
	a := New(ping, Options{})
	if got := a.Add(consumed(skbY, 0, 1000, "pod", req, "__neigh_event_send+0x236")); len(got) != 0 {
		t.Fatalf("early copy handed out at once: %s", pkt(got[0]))
	}
	a.Add(ev(skbX, 0, 1000+3*ms, trace.KindQueue, "pod/eth0", req))
	got := a.Add(consumed(skbX, 0, 1000+4*ms, "pod", req, "icmp_rcv+0x259"))
	check(t, got, []want{{"#1 request left-host pod/eth0", "consumed@pod queued@pod/eth0 consumed@pod"}})
	if s := a.Stats(); s.Copies != 1 || s.Completed != 1 {
		t.Errorf("stats %+v", s)
	}

	// With no original within the window it is a packet of its own, handed out once the window
	// has passed: one still waiting for its neighbour (the original stays queued), never one
	// delivered where its copy was consumed. The timer's later probes clone the same queued
	// packet: copies, not packets.
	a = New(ping, Options{})
	a.Add(consumed(skbY, 0, 1000, "pod", req, "__neigh_event_send+0x236"))
	if got := a.Expire((1000 + 800*ms) * us); len(got) != 0 {
		t.Fatalf("handed out inside the window: %s", pkt(got[0]))
	}
	got = a.Expire((1000 + 1002*ms) * us)
	check(t, got, []want{{"#1 request unknown pod/", "consumed@pod"}})
	if f := got[0].Fate; !strings.Contains(f.Note, "waiting for its next hop's address") || !strings.Contains(f.Note, "__neigh_event_send+0x236") {
		t.Errorf("fate note %q", f.Note)
	}
	if !got[0].Hops[0].Copy {
		t.Errorf("the probe's copy is not marked a copy: %+v", got[0].Hops[0])
	}
	a.Add(consumed(skbZ, 0, 2000*ms, "pod", req, "neigh_timer_handler+0x1a0"))
	if got := a.Flush(); len(got) != 0 {
		t.Errorf("a later probe of the same queued packet made a packet: %s", pkt(got[0]))
	}

	// A kernel whose neigh_probe frees the clone with kfree_skb (no reason): the same.
	a = New(ping, Options{})
	a.Add(dropped(skbY, 0, 1000, "pod", req, "", "__neigh_event_send+0x1b4"))
	a.Add(ev(skbX, 0, 1000+3*ms, trace.KindQueue, "pod/eth0", req))
	got = a.Add(consumed(skbX, 0, 1000+4*ms, "pod", req, "icmp_rcv+0x259"))
	check(t, got, []want{{"#1 request left-host pod/eth0", "dropped@pod queued@pod/eth0 consumed@pod"}})
	a = New(ping, Options{})
	a.Add(dropped(skbY, 0, 1000, "pod", req, "", "__neigh_event_send+0x1b4"))
	got = a.Flush()
	check(t, got, []want{{"#1 request unknown pod/", "dropped@pod"}})
	// Before 6.3 a consume has no location: alone, it is a packet whose end is unknown (the
	// node's neighbour entry may say it waits), never one delivered.
	a = New(ping, Options{})
	a.Add(consumed(skbY, 0, 1000, "pod", req, ""))
	got = a.Flush()
	check(t, got, []want{{"#1 request unknown pod/", "consumed@pod"}})
	if f := got[0].Fate; !strings.Contains(f.Note, "waiting for its next hop's address") || !got[0].Hops[0].Copy {
		t.Errorf("unplaced lone consume: fate %+v, hop %+v", f, got[0].Hops[0])
	}
	// A drop the kernel names there is the packet's own.
	a = New(ping, Options{})
	got = a.Add(dropped(skbY, 0, 1000, "pod", req, "NEIGH_QUEUEFULL", "__neigh_event_send+0x1b4"))
	check(t, got, []want{{"#1 request dropped NEIGH_QUEUEFULL __neigh_event_send+0x1b4 pod/", "dropped@pod"}})
}
