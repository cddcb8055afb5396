package merge

import (
	"io"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// open streams recorded traces, as `pathtrace merge` reads them.
func open(t *testing.T, names ...string) []Stream {
	t.Helper()
	var out []Stream
	for _, n := range names {
		r, err := jsontrace.OpenFile(filepath.Join(recorded, n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		out = append(out, r)
	}
	return out
}

// Within the bound, Gather gives what reading the traces whole gives.
func TestGatherWithinTheBound(t *testing.T) {
	names := []string{"tcp/node1.json", "tcp/node2.json"}
	got, cut, err := Gather(names, open(t, names...), 0)
	if err != nil {
		t.Fatal(err)
	}
	if cut != nil {
		t.Fatalf("cut %+v, want none", cut)
	}
	want := read(t, names...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Gather's inputs are not the traces read whole")
	}
}

// Past the bound, Gather holds the packets that began first, on every node alike, reads the
// rest through and says what it left out; what it holds still merges.
func TestGatherCutsByTime(t *testing.T) {
	names := []string{"ping/node1.json", "ping/node2.json"}
	whole := read(t, names...)
	total := len(whole[0].Trace.Packets) + len(whole[1].Trace.Packets)
	const max = 7
	got, cut, err := Gather(names, open(t, names...), max)
	if err != nil {
		t.Fatal(err)
	}
	if cut == nil {
		t.Fatal("no cut")
	}
	held, left := 0, 0
	for i, in := range got {
		held += len(in.Trace.Packets)
		left += cut.LeftOut[i]
		start := in.Trace.Meta.StartedAt
		// The packets held are those that began before the cut (the file has them in the
		// order they completed), in the file's order.
		var want []trace.Packet
		for _, p := range whole[i].Trace.Packets {
			if start.Add(time.Duration(beginning(&p))).Before(cut.At) {
				want = append(want, p)
			}
		}
		if !reflect.DeepEqual(in.Trace.Packets, want) {
			t.Errorf("%s: held %d packets, want the %d that began before the cut", names[i], len(in.Trace.Packets), len(want))
		}
		if !reflect.DeepEqual(in.Trace.Verdict, whole[i].Trace.Verdict) || !reflect.DeepEqual(in.Trace.Flows, whole[i].Trace.Flows) {
			t.Errorf("%s: the rest of the trace after the packets was not read", names[i])
		}
	}
	if held != max || held+left != total {
		t.Fatalf("held %d and left out %d of %d packets, want %d held", held, left, total, max)
	}
	if _, _, err := Merge(got...); err != nil {
		t.Fatalf("what Gather held does not merge: %v", err)
	}
	s := cut.String()
	for _, want := range []string{"merge holds at most 7 packets (--max-packets)", "before 19:44:57.", "left out: "} {
		if !strings.Contains(s, want) {
			t.Errorf("cut says %q, want %q in it", s, want)
		}
	}
}

// longStream is a trace of n packets made as they are read, in the order they complete:
// packet k began k µs into the trace, but each tenth completed late, after the next nine (n is
// a multiple of ten). It
// keeps a weak pointer to each packet it hands out.
type longStream struct {
	head trace.Trace
	n, i int
	out  []weak.Pointer[trace.Packet]
}

func (s *longStream) Head() (*trace.Trace, error) { return &s.head, nil }
func (s *longStream) Tail() (*trace.Trace, error) { return &s.head, nil }
func (s *longStream) Next() (*trace.Packet, error) {
	if s.i == s.n {
		return nil, io.EOF
	}
	s.i++
	// In each ten, the first completes last: 2, 3, ... 10, 1; 12, 13, ... 20, 11; ...
	k := s.i + 1
	if s.i%10 == 0 {
		k = s.i - 9
	}
	p := &trace.Packet{ID: k, Hops: []trace.Hop{{TimeNS: uint64(k) * 1000}}}
	s.out = append(s.out, weak.Make(p))
	return p, nil
}

// However long the traces, Gather holds maxPackets of them, those that began first whatever
// the order they come in, and lets the others go.
func TestGatherHoldsAtMostTheBound(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &longStream{head: trace.Trace{Meta: trace.Meta{StartedAt: start}}, n: 100000}
	b := &longStream{head: trace.Trace{Meta: trace.Meta{StartedAt: start.Add(250 * time.Microsecond)}}, n: 50000}
	got, cut, err := Gather([]string{"a", "b"}, []Stream{a, b}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// b started 250 µs after a: the first thousand packets to begin are a's first 625 and
	// b's first 375.
	for i, want := range []int{625, 375} {
		ps := got[i].Trace.Packets
		ids := map[int]bool{}
		for _, p := range ps {
			if p.ID <= want {
				ids[p.ID] = true
			}
		}
		if len(ps) != want || len(ids) != want {
			t.Errorf("trace %d: held %d packets, want its first %d to begin", i, len(ps), want)
		}
	}
	if cut == nil || cut.LeftOut[0] != a.n-625 || cut.LeftOut[1] != b.n-375 {
		t.Fatalf("cut %+v", cut)
	}
	if want := start.Add(626 * time.Microsecond); !cut.At.Equal(want) {
		t.Errorf("cut at %v, want %v (when the first packet left out began)", cut.At, want)
	}
	runtime.GC()
	alive := 0
	for _, s := range []*longStream{a, b} {
		for _, w := range s.out {
			if w.Value() != nil {
				alive++
			}
		}
	}
	if alive > 1000 {
		t.Errorf("%d packets still reachable, want the 1000 held at most", alive)
	}
}
