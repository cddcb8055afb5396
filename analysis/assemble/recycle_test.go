package assemble

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// A live run hands each packet's hops back once it has printed and written them (Recycle): the
// packets it hands out are those of a replay all the same, though they are built in the hops
// of earlier ones.
func TestRecycledHopsChangeNothing(t *testing.T) {
	enc := func(ps []trace.Packet) []byte {
		var b []byte
		for i := range ps {
			b = append(ps[i].AppendHeadJSON(b), '\n')
			for j := range ps[i].Hops {
				b = append(ps[i].Hops[j].AppendJSON(b), '\n')
			}
		}
		return b
	}
	for _, r := range testutil.Recordings {
		evs, err := LoadEvents(filepath.Join("../../testdata/events/recorded", r.File+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := trace.NewFilter(netip.PrefixFrom(netip.MustParseAddr(r.Src), 32), netip.PrefixFrom(netip.MustParseAddr(r.Dst), 32), r.Proto, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Three repetitions, as in the benchmark: later ones are built in earlier ones' hops.
		var all []trace.Event
		for rep := range 3 {
			for _, ev := range evs {
				ev.Hop.TimeNS += uint64(rep) * 10_000_000_000
				if t := ev.Hop.Tuple; t != nil && t.Proto == trace.ProtoTCP {
					c := *t
					c.TCPSeq += uint32(rep) * 1_000_003
					ev.Hop.Tuple = &c
				}
				all = append(all, ev)
			}
		}
		want := enc(Replay(f, Options{}, all))
		a := New(f, Options{})
		var got []byte
		take := func(ps []trace.Packet) {
			got = append(got, enc(ps)...)
			a.Recycle(ps)
			for _, p := range ps {
				if p.Hops != nil {
					t.Fatal("Recycle left a packet its hops")
				}
			}
		}
		for _, ev := range all {
			take(a.Add(ev))
		}
		take(a.Flush())
		if !bytes.Equal(got, want) {
			t.Errorf("%s: packets differ when their hops are recycled", r.File)
		}
	}
}
