package assemble

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

// FuzzReadEvents: ReadEvents never panics on any input, and whatever event stream it accepts
// Replay assembles without panicking into packets numbered 1..n, each once, whose hops are in
// time order and whose originals (CopyOf, RetransmitOf) are other packets of the same replay.
// The stream is replayed twice: with no filter and the default limits, and with a filter on its
// first packet's flow and limits small enough that eviction, hop cutting and idling happen.
// Seeds are in testdata/fuzz/FuzzReadEvents: the hand-written event streams, a recording, and
// broken lines.
func FuzzReadEvents(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ReadEvents(bytes.NewReader(data))
		if err != nil {
			if evs != nil {
				t.Fatalf("ReadEvents returned %d events with its error %v", len(evs), err)
			}
			return
		}
		checkReplay(t, "no filter, default options", Replay(trace.Filter{}, Options{}, evs))
		tiny := Options{Idle: time.Millisecond, MaxOpen: 2, MaxHops: 2}
		checkReplay(t, "first flow, tiny options", Replay(firstFlow(evs), tiny, evs))
	})
}

func checkReplay(t *testing.T, what string, pkts []trace.Packet) {
	t.Helper()
	seen := make(map[int]bool, len(pkts))
	for i, p := range pkts {
		if p.ID <= 0 || p.ID > len(pkts) {
			t.Fatalf("%s: packet %d of %d has ID %d, want 1..%d", what, i, len(pkts), p.ID, len(pkts))
		}
		if seen[p.ID] {
			t.Fatalf("%s: ID %d handed out twice", what, p.ID)
		}
		seen[p.ID] = true
		for j := 1; j < len(p.Hops); j++ {
			if p.Hops[j].TimeNS < p.Hops[j-1].TimeNS {
				t.Fatalf("%s: packet #%d: hop %d at %d ns comes after hop %d at %d ns", what, p.ID, j, p.Hops[j].TimeNS, j-1, p.Hops[j-1].TimeNS)
			}
		}
	}
	for _, p := range pkts {
		for name, orig := range map[string]int{"CopyOf": p.CopyOf, "RetransmitOf": p.RetransmitOf} {
			if orig != 0 && (orig == p.ID || !seen[orig]) {
				t.Fatalf("%s: packet #%d has %s %d, which is not another packet of the replay", what, p.ID, name, orig)
			}
		}
	}
}

// firstFlow is a filter naming the flow of the first event with headers, so that the replay
// classifies packets as requests and replies and learns NAT translations.
func firstFlow(evs []trace.Event) trace.Filter {
	for _, ev := range evs {
		h := ev.Hop.Tuple
		if h == nil || !h.Src.IsValid() || !h.Dst.IsValid() {
			continue
		}
		src, dst := h.Src.Unmap(), h.Dst.Unmap()
		if src.Is4() != dst.Is4() {
			continue
		}
		f := trace.Filter{Src: netip.PrefixFrom(src, src.BitLen()), Dst: netip.PrefixFrom(dst, dst.BitLen()), Proto: h.Proto}
		if h.Proto == trace.ProtoTCP || h.Proto == trace.ProtoUDP {
			f.Sport, f.Dport = h.Sport, h.Dport
		}
		return f
	}
	return trace.Filter{}
}
