package diagnose

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// Observe keeps nothing of a packet's hops: a live run builds later packets in them. The
// verdict is the same when every packet's hops are overwritten once observed.
func TestObserveKeepsNoHops(t *testing.T) {
	recs := append([]testutil.Recording{{File: "../uplink_left_host", Src: "10.0.1.2", Dst: "8.8.8.8", Proto: trace.ProtoICMP}},
		testutil.Recordings...)
	for _, r := range recs {
		evs, err := assemble.LoadEvents(filepath.Join("../../testdata/events/recorded", r.File+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := trace.NewFilter(netip.PrefixFrom(netip.MustParseAddr(r.Src), 32), netip.PrefixFrom(netip.MustParseAddr(r.Dst), 32), r.Proto, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr := &trace.Trace{Filter: f, Packets: assemble.Replay(f, assemble.Options{}, evs)}
		if r.File == "../uplink_left_host" {
			// No reply: the verdict rests on the request that left.
			tr.Packets = slices.DeleteFunc(tr.Packets, func(p trace.Packet) bool { return p.Flow == trace.Reply })
			if len(tr.Packets) == 0 || Verdict(tr).Outcome != "left-host" {
				t.Fatalf("uplink_left_host: want a left-host verdict to test, got %+v", Verdict(tr))
			}
		}
		want := Verdict(tr)
		d := New(nil)
		for _, p := range tr.Packets {
			p.Hops = slices.Clone(p.Hops)
			d.Observe(p)
			for i := range p.Hops {
				p.Hops[i] = trace.Hop{Event: trace.KindConsume, Location: "overwritten"}
			}
		}
		if diff := cmp.Diff(want, d.Verdict(&trace.Trace{Filter: f}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s: verdict changed when observed hops were overwritten (-want +got):\n%s", r.File, diff)
		}
	}
}
