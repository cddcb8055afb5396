package run

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/pcapng"
	"github.com/pathtrace/pathtrace/render/svg"
	"github.com/pathtrace/pathtrace/trace"
)

// keepAll keeps tr's packets as a run does, n times over, for a capture and a picture at dir.
func keepAll(t testing.TB, tr *trace.Trace, dir string, n int) *keptPackets {
	t.Helper()
	kept, err := newKeptPackets(filepath.Join(dir, "trace.pcapng"), n*len(tr.Packets))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		for i := range tr.Packets {
			kept.Add(&tr.Packets[i])
		}
	}
	return kept
}

// A live run writes the capture and the picture from the packets it kept, read back one at a
// time: the files are those of the whole trace.
func TestArtifactsFromKeptPackets(t *testing.T) {
	tr, err := jsontrace.ReadFile("../../testdata/postmortem/dnat.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kept := keepAll(t, tr, dir, 1)
	defer kept.close()
	pc, pic := filepath.Join(dir, "trace.pcapng"), filepath.Join(dir, "trace.svg")
	head := *tr
	head.Packets = nil
	if err := writeArtifacts(pc, pic, &head, kept); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		write func(*bytes.Buffer, *trace.Trace) error
	}{
		{pc, func(b *bytes.Buffer, t *trace.Trace) error { return pcapng.Write(b, t) }},
		{pic, func(b *bytes.Buffer, t *trace.Trace) error { return svg.Write(b, t) }},
	} {
		var want bytes.Buffer
		if err := c.write(&want, tr); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(c.path)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s (%v): not what the whole trace gives", c.path, err)
		}
	}
}

// BenchmarkArtifacts measures the end of a run with --pcapng and --svg that kept 10000
// packets (--max-packets' default): read back, captured and drawn.
func BenchmarkArtifacts(b *testing.B) {
	tr, err := jsontrace.ReadFile("../../testdata/postmortem/dnat.json")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	kept := keepAll(b, tr, dir, DefaultMaxPackets/len(tr.Packets))
	defer kept.close()
	head := *tr
	head.Packets = nil
	for b.Loop() {
		if err := writeArtifacts(filepath.Join(dir, "t.pcapng"), filepath.Join(dir, "t.svg"), &head, kept); err != nil {
			b.Fatal(err)
		}
	}
}
