// Package emit is what a run does with each packet as it completes: it names the packet's
// places by pod, counts it in its flow, diagnoses it, keeps it for the trace file and prints
// its block. run.Run uses it, and so does the benchmark of the live path (tracer's
// BenchmarkLive: records decoded, assembled and handed here), so what is measured is what runs.
package emit

import (
	"io"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

// Packets takes the packets an assembler completes, in the order it completes them.
type Packets struct {
	// Count stops taking packets after this many (--count); 0: no limit.
	Count int
	// Labeller names each packet's places by pod before anything else sees it; nil: none.
	Labeller interface{ Label(*trace.Packet) }
	// Marker marks pathtrace's own probe packets (trace.Packet.FromProbe); nil: none.
	Marker  interface{ Mark(*trace.Packet) }
	Flows   *assemble.Summarizer
	Diag    *diagnose.Diagnoser
	Kept    *Kept
	Printer *text.Printer

	// Taken counts the packets taken; NotKept those of them past Kept's room, which are
	// counted in the flows and diagnosed, not kept or printed.
	Taken   int
	NotKept uint64
}

// Take handles done and says whether Count is reached: the run is to end. Past Count it
// takes nothing, even of packets that completed together with the last one taken.
func (e *Packets) Take(done []trace.Packet) (countReached bool) {
	for i := range done {
		if e.Count > 0 && e.Taken >= e.Count {
			break
		}
		e.Taken++
		p := &done[i]
		if e.Labeller != nil {
			e.Labeller.Label(p)
		}
		if e.Marker != nil {
			e.Marker.Mark(p)
		}
		e.Flows.Add(*p)
		e.Diag.Observe(*p)
		// A long run of a busy flow must not grow without end: past the kept packets they
		// are counted and diagnosed, not kept or printed.
		if e.Kept.Add(p) {
			e.Printer.Packet(*p)
		} else {
			e.NotKept++
		}
	}
	return e.Count > 0 && e.Taken >= e.Count
}

// Kept keeps the first packets a run completes, up to its room, for the trace file: each is
// encoded as it completes, as the file's packets will read.
type Kept struct {
	room int
	n    int
	pw   *jsontrace.PacketWriter // nil: packets are only counted
	err  error                   // the first write error; later packets are not written
}

// NewKept keeps up to room packets, encoded to w; w nil only counts them. Buffer w.
func NewKept(w io.Writer, room int) *Kept {
	k := &Kept{room: room}
	if w != nil {
		k.pw = jsontrace.NewPacketWriter(w)
	}
	return k
}

// Add keeps p if there is room, and says whether there was.
func (k *Kept) Add(p *trace.Packet) bool {
	if k.n >= k.room {
		return false
	}
	k.n++
	if k.pw != nil && k.err == nil {
		k.err = k.pw.Write(p)
	}
	return true
}

// N is how many packets were kept.
func (k *Kept) N() int { return k.n }

// Written is how many packets were written out, Err why the others were not.
func (k *Kept) Written() int {
	if k.pw == nil {
		return 0
	}
	return k.pw.Count()
}

// Err is the first error writing a packet out.
func (k *Kept) Err() error { return k.err }
