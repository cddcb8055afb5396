package assemble

import (
	"net/netip"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// seenHop is a hop of the UDP datagram with IP ID id, in netns 1, at ns.
func seenHop(id uint16, ns uint64) *trace.Hop {
	return &trace.Hop{Place: trace.Place{Netns: 1}, TimeNS: ns, Tuple: &trace.Headers{
		Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: netip.MustParseAddr("10.0.1.2"), Dst: netip.MustParseAddr("10.0.2.2"), Sport: 4000, Dport: 53},
		IPID:  id, TTL: 64,
	}}
}

// Past its limit of keys the index forgets the oldest, and finds the rest.
func TestCopyIndexLimit(t *testing.T) {
	x := newCopyIndex(100)
	ps := make([]*packet, 250)
	for i := range ps {
		ps[i] = &packet{}
		x.note(ps[i], seenHop(uint16(i), uint64(i)))
		x.note(ps[i], seenHop(uint16(i), uint64(i)+1)) // the same key again: no new entry
	}
	if x.n != 100 || len(x.slot) != 100 {
		t.Fatalf("%d entries, %d in the map; want the limit, 100", x.n, len(x.slot))
	}
	for i, p := range ps {
		got := x.find(seenHop(uint16(i), 300), false)
		if want := i >= 150; (got == p) != want || (got != nil && got != p) {
			t.Errorf("packet %d: found %v, want it found: %v", i, got != nil, want)
		}
	}
	// The TTL is no part of the key: a copy made after ip_forward has the original's headers.
	h := seenHop(200, 300)
	h.Tuple.TTL = 63
	if x.find(h, false) != ps[200] {
		t.Error("a copy with another TTL was not found")
	}
}

// A key seen again stays as long as its latest sighting needs; packets handed out go at the
// next look, and a key with nothing left is forgotten.
func TestCopyIndexPrune(t *testing.T) {
	const s = uint64(1_000_000_000)
	x := newCopyIndex(copyIndexMax)
	p, q, done := &packet{}, &packet{}, &packet{}
	x.note(p, seenHop(1, 0))
	x.note(done, seenHop(1, 0))
	x.note(q, seenHop(2, 0))
	x.note(p, seenHop(1, s/2)) // p again, half a second later
	done.state = stDone

	x.prune(0 + copyWindowNS + reorderSlackNS + 1)
	if x.find(seenHop(1, s), false) != p {
		t.Error("p, seen again at 0.5s, was forgotten at its first sighting's expiry")
	}
	if x.find(seenHop(1, s), true) == done {
		t.Error("a packet handed out was kept past its key's look")
	}
	if x.find(seenHop(2, s/2), true) != nil || x.n != 1 || len(x.slot) != 1 {
		t.Errorf("q's key not forgotten: %d entries, %d in the map", x.n, len(x.slot))
	}
	x.prune(s/2 + copyWindowNS + reorderSlackNS + 1)
	if x.n != 0 || len(x.slot) != 0 {
		t.Errorf("%d entries, %d in the map after every key expired", x.n, len(x.slot))
	}
	// The ring is used again after emptying.
	x.note(q, seenHop(3, 5*s))
	if x.find(seenHop(3, 5*s), false) != q {
		t.Error("a key noted after the index emptied is not found")
	}
}

// Under a flood of NO_SOCKET drops (UDP to a closed port) no more than maxHeld packets wait
// for a copy: past it the oldest goes out early, in order, and none is lost.
func TestHeldBounded(t *testing.T) {
	f := trace.Filter{Proto: trace.ProtoUDP}
	a := New(f, Options{})
	const n = maxHeld + 100
	var out []trace.Packet
	for i := range n {
		skb := uint64(0xffff888200000000) + uint64(i)<<8
		d := udp("10.0.1.2", uint16(10000+i), "172.16.0.2", 9)
		out = append(out, a.Add(ev(skb, 0, 1000+uint64(i), trace.KindReceive, "ext/eth0", d))...)
		out = append(out, a.Add(dropped(skb, 0, 1000+uint64(i), "ext/eth0", d, "NO_SOCKET", "__udp4_lib_rcv+0x8c1"))...)
		if held := len(a.held) - a.heldHead; held > maxHeld {
			t.Fatalf("%d packets held after %d drops, want at most %d", held, i+1, maxHeld)
		}
	}
	if len(out) != n-maxHeld {
		t.Errorf("%d packets out during the flood of %d drops, want %d", len(out), n, n-maxHeld)
	}
	out = append(out, a.Flush()...)
	if len(out) != n {
		t.Fatalf("%d packets in all, want %d", len(out), n)
	}
	for i, p := range out {
		if p.ID != i+1 || p.Tuple.Sport != uint16(10000+i) || p.Fate.Reason != "NO_SOCKET" {
			t.Fatalf("packet %d: #%d sport %d %s, want #%d sport %d NO_SOCKET", i, p.ID, p.Tuple.Sport, p.Fate.Reason, i+1, 10000+i)
		}
	}
}
