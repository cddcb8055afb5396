package jsontrace

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/render/internal/tracetest"
	"github.com/pathtrace/pathtrace/trace"
)

// Packets written one by one and the document written around them at the end are the
// document Write makes of the whole trace, and read back as the trace.
func TestWriteStreamed(t *testing.T) {
	for _, s := range tracetest.Scenes() {
		tr := s.Build()
		var packets bytes.Buffer
		pw := NewPacketWriter(&packets)
		for i := range tr.Packets {
			if err := pw.Write(&tr.Packets[i]); err != nil {
				t.Fatal(err)
			}
		}
		if pw.Count() != len(tr.Packets) {
			t.Errorf("%s: Count %d, want %d", s.Name, pw.Count(), len(tr.Packets))
		}
		head := *tr
		head.Packets = nil
		var streamed, whole bytes.Buffer
		if err := WriteStreamed(&streamed, &head, &packets, pw.Count()); err != nil {
			t.Fatal(err)
		}
		if err := Write(&whole, tr); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(whole.String(), streamed.String()); d != "" {
			t.Errorf("%s: streamed document differs from the whole one:\n%s", s.Name, d)
		}
		back, err := Read(&streamed)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if d := cmp.Diff(tr, back, cmpAddrs); d != "" {
			t.Errorf("%s: round trip (-want +got):\n%s", s.Name, d)
		}
	}
}

// Each hop is a line of its own, and a packet's headers and fate one line before them.
func TestWriteHopPerLine(t *testing.T) {
	tr := tracetest.HealthyPing()
	var buf bytes.Buffer
	if err := Write(&buf, tr); err != nil {
		t.Fatal(err)
	}
	hops, heads := 0, 0
	for _, l := range strings.Split(buf.String(), "\n") {
		switch {
		case strings.HasPrefix(l, `      {"time_ns":`):
			hops++
		case strings.HasPrefix(l, `    {"id":`):
			heads++
			if !strings.HasSuffix(l, `"hops":[`) || !strings.Contains(l, `"fate":{`) {
				t.Errorf("packet line %q: want its fields, then the hops", l)
			}
		}
	}
	want := 0
	for _, p := range tr.Packets {
		want += len(p.Hops)
	}
	if heads != len(tr.Packets) || hops != want {
		t.Errorf("%d packet lines and %d hop lines, want %d and %d:\n%s", heads, hops, len(tr.Packets), want, buf.String())
	}
}

// A trace without packets, and packets without hops, keep what they were.
func TestWriteEmpty(t *testing.T) {
	tr := tracetest.NoPackets()
	var buf bytes.Buffer
	if err := Write(&buf, tr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\n  \"packets\": null,\n") {
		t.Errorf("no packets: want \"packets\": null in\n%s", buf.String())
	}
	back, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Packets != nil {
		t.Errorf("packets %v, want none", back.Packets)
	}

	tr.Packets = []trace.Packet{{ID: 1, Flow: trace.Request}, {ID: 2, Flow: trace.Reply, Hops: []trace.Hop{}}}
	buf.Reset()
	if err := Write(&buf, tr); err != nil {
		t.Fatal(err)
	}
	back, err = Read(&buf)
	if err != nil {
		t.Fatalf("%v in\n%s", err, buf.String())
	}
	if d := cmp.Diff(tr.Packets, back.Packets, cmpAddrs); d != "" {
		t.Errorf("packets without hops (-want +got):\n%s", d)
	}
}
