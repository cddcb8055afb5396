package run

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

// The trace's meta counts the events the run received: a replay, every event recorded.
func TestReplayCountsEvents(t *testing.T) {
	for _, r := range testutil.Recordings {
		events, err := assemble.LoadEvents(filepath.Join("../../testdata/events/recorded", r.File+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		tr := Replay(hostFilter(t, r.Src, r.Dst, r.Proto), events)
		if tr.Meta.Events != uint64(len(events)) || len(events) == 0 {
			t.Errorf("%s: meta.events %d, want the %d events recorded", r.File, tr.Meta.Events, len(events))
		}
		var buf bytes.Buffer
		if err := jsontrace.Write(&buf, tr); err != nil {
			t.Fatal(err)
		}
		back, err := jsontrace.Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if back.Meta.Events != tr.Meta.Events {
			t.Errorf("%s: meta.events %d after a round trip, want %d", r.File, back.Meta.Events, tr.Meta.Events)
		}
	}
}

// streamRun does with a recording what Run does with the kernel's events: each packet is kept
// (written out) as it completes, at most max, then the trace is saved at path around them.
func streamRun(t *testing.T, file string, f trace.Filter, path string, max int) (*trace.Trace, string, []trace.Packet) {
	t.Helper()
	events, err := assemble.LoadEvents(filepath.Join("../../testdata/events/recorded", file+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := Replay(f, events)
	kept, err := newKeptPackets(path, max)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.close()
	tr := &trace.Trace{Schema: trace.Schema, Filter: f, Meta: want.Meta, Flows: want.Flows, Verdict: want.Verdict}
	var live bytes.Buffer
	pr := text.NewPrinter(&live, text.Options{})
	pr.Header(tr)
	var held []trace.Packet
	for _, p := range want.Packets {
		if kept.Add(&p) {
			pr.Packet(p)
			held = append(held, p)
		} else {
			tr.Meta.NotKept++
		}
	}
	pr.SummaryOf(tr, kept.N())
	if err := kept.save(path, tr); err != nil {
		t.Fatal(err)
	}
	if tr.Packets != nil {
		t.Error("saving put the packets in memory")
	}
	return tr, live.String(), held
}

// A run's packets are written out as they complete and the trace is saved around them: the
// file holds the same trace as one written whole, and `show` prints what the run printed.
func TestStreamedTraceRoundTrips(t *testing.T) {
	dir := t.TempDir()
	for _, r := range testutil.Recordings {
		f := hostFilter(t, r.Src, r.Dst, r.Proto)
		path := filepath.Join(dir, r.File+".json")
		tr, live, held := streamRun(t, r.File, f, path, 0)

		saved, err := jsontrace.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		whole := *tr
		whole.Packets = held
		if d := cmp.Diff(&whole, saved, testutil.AsSaved); d != "" {
			t.Errorf("%s: saved trace differs (-run +file):\n%s", r.File, d)
		}
		var shown bytes.Buffer
		if err := text.Render(&shown, saved, text.Options{}); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(live, shown.String()); d != "" {
			t.Errorf("%s: show differs from the run:\n%s", r.File, d)
		}

		// The same trace written whole is the same file.
		var buf bytes.Buffer
		if err := jsontrace.Write(&buf, &whole); err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(path)
		if !bytes.Equal(file, buf.Bytes()) {
			t.Errorf("%s: the streamed file differs from the trace written whole", r.File)
		}
	}
	// Nothing but the trace files is left in the directory: the packets' file had no name.
	left, _ := os.ReadDir(dir)
	if len(left) != len(testutil.Recordings) {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left in the trace directory: %v", names)
	}
}

// Past --max-packets, packets are counted, not kept: the file holds the first ones and says how
// many more there were.
func TestStreamedTraceKeepsTheFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.json")
	f := hostFilter(t, "10.23.1.2", "10.23.2.2", trace.ProtoTCP)
	tr, live, held := streamRun(t, "tcp-conversation", f, path, 3)
	saved, err := jsontrace.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Packets) != 3 || len(held) != 3 || tr.Meta.NotKept == 0 || saved.Meta.NotKept != tr.Meta.NotKept {
		t.Fatalf("saved %d packets, not kept %d (run said %d); want 3 and the rest counted",
			len(saved.Packets), saved.Meta.NotKept, tr.Meta.NotKept)
	}
	for i, p := range saved.Packets {
		if p.ID != held[i].ID {
			t.Errorf("packet %d of the file is #%d, want #%d", i, p.ID, held[i].ID)
		}
	}
	var shown bytes.Buffer
	if err := text.Render(&shown, saved, text.Options{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(live, shown.String()); d != "" {
		t.Errorf("show differs from the run:\n%s", d)
	}
}
