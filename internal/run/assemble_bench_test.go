package run

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/internal/run/emit"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

type benchRecording struct {
	name   string
	filter trace.Filter
	lines  [][]byte      // the JSON lines as recorded
	events []trace.Event // decoded once
	spanNS uint64        // first to last event time, plus a gap longer than the idle timeout
}

func loadBenchRecordings(b *testing.B) []benchRecording {
	b.Helper()
	var out []benchRecording
	for _, r := range testutil.Recordings {
		path := filepath.Join("../../testdata/events/recorded", r.File+".jsonl")
		raw, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		evs, err := assemble.ReadEvents(bytes.NewReader(raw))
		if err != nil {
			b.Fatalf("%s: %v", path, err)
		}
		f, err := trace.NewFilter(netip.PrefixFrom(netip.MustParseAddr(r.Src), 32),
			netip.PrefixFrom(netip.MustParseAddr(r.Dst), 32), r.Proto, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		var lines [][]byte
		for _, l := range bytes.Split(raw, []byte("\n")) {
			if l = bytes.TrimSpace(l); len(l) > 0 {
				lines = append(lines, l)
			}
		}
		var lo, hi uint64 = ^uint64(0), 0
		for _, ev := range evs {
			lo, hi = min(lo, ev.Hop.TimeNS), max(hi, ev.Hop.TimeNS)
		}
		out = append(out, benchRecording{name: r.File, filter: f, lines: lines, events: evs,
			spanNS: hi - lo + uint64(3*time.Second)})
	}
	return out
}

// shifted is ev as the i-th repetition of its recording: later by i spans, and for TCP with
// its sequence numbers moved on, so a repetition is a new conversation rather than a
// retransmission of the last one. The sk_buff addresses stay: the kernel reuses them too.
func shifted(ev trace.Event, i int, span uint64) trace.Event {
	off := uint64(i) * span
	ev.Hop.TimeNS += off
	if t := ev.Hop.Tuple; t != nil && t.Proto == trace.ProtoTCP {
		c := *t
		c.TCPSeq += uint32(i) * 1_000_003
		ev.Hop.Tuple = &c
	}
	return ev
}

// BenchmarkAssemble measures userspace event handling on the recorded event streams, in
// events per second (the events/s metric):
//
//   - replay: assemble.Replay per recording (a fresh assembler each time, as `pathtrace show`
//     of a recording would);
//   - stream: one long-lived assembler per recording fed repetition after repetition (times
//     moved on, idle packets expired after each), as a live run feeds it;
//   - json+stream: the same with each event decoded from its recorded JSON line first (the
//     fixture format; the live path decodes a binary ring-buffer record instead, in package
//     tracer, which this does not measure);
//   - pipeline: stream plus what run.Run does with each completed packet, by the same
//     emit.Packets: counted in its flow, diagnosed, encoded for the trace file (into a buffer
//     written to io.Discard) and its text block written to io.Discard, every packet kept.
//
// tracer's BenchmarkLive is pipeline with each event decoded from a ring-buffer record first.
func BenchmarkAssemble(b *testing.B) {
	recs := loadBenchRecordings(b)
	total := 0
	for _, r := range recs {
		total += len(r.events)
	}
	report := func(b *testing.B, events int) {
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
	}

	b.Run("replay", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, r := range recs {
				n += len(assemble.Replay(r.filter, assemble.Options{}, r.events))
			}
		}
		if n == 0 {
			b.Fatal("no packets")
		}
		report(b, b.N*total)
	})

	stream := func(b *testing.B, decode bool, pipeline bool) {
		b.ReportAllocs()
		asms := make([]*assemble.Assembler, len(recs))
		for i, r := range recs {
			asms[i] = assemble.New(r.filter, assemble.Options{})
		}
		pk := &emit.Packets{
			Flows:   assemble.NewSummarizer(trace.Filter{}), // the assemblers classified every packet
			Diag:    diagnose.New(nil),
			Kept:    emit.NewKept(bufio.NewWriterSize(io.Discard, 256<<10), math.MaxInt),
			Printer: text.NewPrinter(io.Discard, text.Options{}),
		}
		packets := 0
		var asm *assemble.Assembler
		hand := func(ps []trace.Packet) {
			packets += len(ps)
			if pipeline {
				pk.Take(ps)
			}
			asm.Recycle(ps) // as run.Run does
		}
		rep := 0
		for b.Loop() {
			for i, r := range recs {
				asm = asms[i]
				if decode {
					for _, l := range r.lines {
						var ev trace.Event
						if err := json.Unmarshal(l, &ev); err != nil {
							b.Fatal(err)
						}
						hand(asms[i].Add(shifted(ev, rep, r.spanNS)))
					}
				} else {
					for _, ev := range r.events {
						hand(asms[i].Add(shifted(ev, rep, r.spanNS)))
					}
				}
				hand(asms[i].Expire(uint64(rep+1)*r.spanNS + r.events[0].Hop.TimeNS))
			}
			rep++
		}
		for i := range asms {
			asm = asms[i]
			hand(asm.Flush())
		}
		if packets == 0 {
			b.Fatal("no packets")
		}
		report(b, b.N*total)
	}
	b.Run("stream", func(b *testing.B) { stream(b, false, false) })
	b.Run("json+stream", func(b *testing.B) { stream(b, true, false) })
	b.Run("pipeline", func(b *testing.B) { stream(b, false, true) })
}
