// Package run is one pathtrace run: it opens the tracer, assembles packets as events arrive,
// prints each one as it completes, and ends with the flow summary, the verdict and the saved
// trace. The CLI and the demo both use it.
package run

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/internal/probe"
	"github.com/pathtrace/pathtrace/internal/run/emit"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer"
)

// Options are one run's settings.
type Options struct {
	Filter   trace.Filter
	Duration time.Duration // 0: until ctx ends or Count is reached
	Count    int           // stop after this many packets; 0: no limit
	JSONPath string        // write the trace here at the end; "" for none
	// PcapngPath and SVGPath receive the postmortem artifacts at the end: the capture
	// (render/pcapng) and the picture (render/svg). With PcapngPath every hop carries the
	// packet's headers from the kernel.
	PcapngPath, SVGPath string
	// ReadyFile is created once every probe is attached, for harnesses.
	ReadyFile string
	// RecordPath receives every raw event as JSON lines, for recorded test fixtures.
	RecordPath string
	KernelBTF  string
	// RingBufferBytes sizes the kernel's event ring buffer (a power of two); 0 keeps the default.
	RingBufferBytes uint32
	// MaxPackets caps the packets kept in the trace and printed; 0 means DefaultMaxPackets.
	MaxPackets int
	// Backend chooses how function-level hops are captured (tracer.Backend*); "" is auto.
	Backend string
	// MaxRate is the budget: at most this many new packets a second are traced, the rest
	// counted (Meta.OverBudget); 0 for no budget.
	MaxRate uint64
	Args    []string
	Out     io.Writer
	Color   bool
	// OnReady runs once the probes are attached (the demo starts its traffic here).
	OnReady func()
	// Probe, when set, is --probe's traffic: sent once the probes are attached, until the run
	// ends, and recorded in the trace's meta.probe. ProbeLog is told of each packet sent.
	Probe    *probe.Probe
	ProbeLog io.Writer
	// Facts reads the node's state where packets die, for the verdict; nil reads nothing.
	Facts diagnose.Facts
	// NFTrace turns on the kernel's nftables tracing for the flow, to name a dropping rule.
	NFTrace bool
	// NetnsScope keeps only the hops seen in these network namespaces (by name): a lab whose
	// "nodes" are namespaces of one kernel then yields the trace each node would take alone.
	NetnsScope []string

	// HostNetns and NetnsDirs say where the node's namespace and its named ones are
	// (hostenv.Env: under /host from a debug pod); nil keeps the tracer's defaults.
	HostNetns, NetnsDirs []string
	// Pods are the pods named in --src/--dst, for the trace's Meta and header.
	Pods []trace.PodInfo
	// Labeller names each packet's places by pod before it is printed; nil labels nothing.
	Labeller interface{ Label(*trace.Packet) }
	// Degraded adds what the run cannot show for reasons outside the kernel (no CRI socket).
	Degraded []string
}

// DefaultMaxPackets is how many packets a run keeps and prints before it only counts them.
const DefaultMaxPackets = 10000

// DefaultMaxRate is the command's budget (--max-rate): how many new packets a second it traces
// before it only counts them.
const DefaultMaxRate = 1000

// Run traces until the duration, the count or ctx ends, and returns the trace. The trace's
// packets are not in it: they were printed and written to the trace file as they completed.
func Run(ctx context.Context, o Options) (*trace.Trace, error) {
	// The trace is written at the end; that it can be is checked now, before tracing starts,
	// so an unwritable path fails at once and a killed run leaves no file behind.
	for _, path := range []string{o.JSONPath, o.PcapngPath, o.SVGPath} {
		if path == "" {
			continue
		}
		out, err := openOutput(path)
		if err != nil {
			return nil, err
		}
		out.abort()
	}
	var snd *sender
	if o.Probe != nil {
		var err error
		if snd, err = newSender(*o.Probe, o.ProbeLog); err != nil {
			return nil, err
		}
	}
	rec, err := openOutput(o.RecordPath)
	if err != nil {
		return nil, err
	}
	defer rec.abort()
	kept, err := newKeptPackets(cmp.Or(o.JSONPath, o.PcapngPath, o.SVGPath), o.MaxPackets)
	if err != nil {
		return nil, err
	}
	defer kept.close()

	tr, err := tracer.Open(tracer.Config{Filter: o.Filter, KernelBTF: o.KernelBTF, RingBufferBytes: o.RingBufferBytes, Backend: o.Backend,
		MaxRate: o.MaxRate, HostNetns: o.HostNetns, NetnsDirs: o.NetnsDirs, Snap: o.PcapngPath != ""})
	if err != nil {
		return nil, err
	}
	defer tr.Close()

	t := &trace.Trace{
		Schema: trace.Schema,
		Filter: o.Filter,
		Meta: trace.Meta{
			Kernel:    kernelRelease(),
			StartedAt: tr.StartedAt().UTC(),
			Args:      o.Args,
			Backend:   tr.Backend(),
			Probes:    tr.Probes(),
			Degraded:  append(slices.Clip(tr.Degraded()), o.Degraded...),
			Pods:      o.Pods,
			MaxRate:   o.MaxRate,
		},
	}
	t.Meta.Hostname, _ = os.Hostname()
	if snd != nil {
		snd.from(o.Pods)
		t.Meta.Probe = snd.planned()
	}

	asm := assemble.New(o.Filter, assemble.Options{})
	diag := diagnose.New(o.Facts)
	var nf *netfilterWatch
	defer func() {
		if nf != nil {
			nf.Close()
		}
	}()
	if o.NFTrace {
		// Said before tracing starts: a netfilter drop's rule will not be named (anywhere, or
		// in the namespaces of the warnings).
		if nf, err = watchNetfilter(o.Filter, diag, o.NetnsDirs); err != nil {
			t.Meta.Degraded = append(t.Meta.Degraded, "nftables tracing unavailable: "+err.Error()+": rule names not shown")
		} else {
			for _, w := range nf.mgr.Warnings() {
				t.Meta.Degraded = append(t.Meta.Degraded, "nftables tracing unavailable: "+w)
			}
		}
	}
	// The kernel's symbols were read meanwhile: from the ready file on, no drop waits for them.
	if err := tr.Symbols(); err != nil {
		t.Meta.Degraded = append(t.Meta.Degraded, "drop locations are shown as addresses: "+err.Error())
	}
	pr := text.NewPrinter(o.Out, text.Options{Color: o.Color})
	pr.Header(t)

	if o.ReadyFile != "" {
		if err := os.WriteFile(o.ReadyFile, []byte("ready\n"), 0o644); err != nil {
			return nil, fmt.Errorf("write ready file: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	endReason := "signal"
	if o.Duration > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, o.Duration)
		defer cancelT()
	}
	if o.OnReady != nil {
		go o.OnReady()
	}
	if snd != nil {
		snd.start(ctx)
	}

	// What is done with each packet as it completes (emit.Packets): labelled, counted in its
	// flow, diagnosed, kept for the trace file and printed.
	pk := &emit.Packets{Count: o.Count, Labeller: o.Labeller, Flows: assemble.NewSummarizer(o.Filter), Diag: diag, Kept: kept.Kept, Printer: pr}
	if snd != nil {
		pk.Marker = snd
	}
	take := func(done []trace.Packet) {
		reached := pk.Take(done)
		asm.Recycle(done) // their hops are printed and written: the next packets' are built in them
		if reached && endReason != "count" {
			endReason = "count"
			cancel()
		}
	}
	var enc *json.Encoder
	var recErr error // the first failed write: a recording cut short is no fixture
	if rec.f != nil {
		enc = json.NewEncoder(rec.f)
	}
	scope := newScope(o.NetnsScope)
	err = tr.Run(ctx, func(ev trace.Event) {
		if !scope.admit(&ev) {
			return // another "node"'s hop: filtered before anything sees it
		}
		if enc != nil && recErr == nil {
			if err := enc.Encode(ev); err != nil {
				recErr = fmt.Errorf("write %s: %w", rec.path, err)
			}
		}
		if nf != nil {
			nf.Seen(ev.Hop.Netns)
		}
		if ev.Hop.Event == trace.KindRoute {
			diag.RouteLookup(ev.Hop) // a failed lookup may be all a send that found no route leaves
		}
		take(asm.Add(ev))
	}, func(now uint64) { take(asm.Expire(now)) })
	if err != nil {
		return nil, err
	}
	take(asm.Flush())
	if endReason != "count" && o.Duration > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		endReason = "duration"
	}

	st, err := tr.Stats()
	if err != nil {
		return nil, err
	}
	t.Meta.Events = tr.Received()
	t.Meta.LostEvents = st.Lost
	t.Meta.Untracked = st.TrackFull
	t.Meta.Skipped = st.Skipped
	t.Meta.RoutesSkipped = st.RoutesSkipped
	t.Meta.OverBudget = st.OverBudget
	if nf != nil {
		// Its last drops reach the diagnosis before the verdict is made.
		nf.Close()
		nf = nil
	}
	if snd != nil {
		cancel() // the sender keeps its sockets open for replies until the run's end: now
		t.Meta.Probe = snd.result()
	}
	t.Meta.EndedAt = time.Now().UTC()
	t.Meta.EndReason = endReason
	t.Meta.NotKept = pk.NotKept
	t.Flows = pk.Flows.Flows()
	t.Verdict = diag.Verdict(t)
	pr.SummaryOf(t, kept.N())

	if rec.f != nil {
		if recErr != nil {
			return t, recErr // abort removes the partial file
		}
		if err := rec.commit(); err != nil {
			return t, err
		}
	}
	if o.JSONPath != "" {
		if err := kept.save(o.JSONPath, t); err != nil {
			return t, err
		}
	}
	if err := writeArtifacts(o.PcapngPath, o.SVGPath, t, kept); err != nil {
		return t, err
	}
	return t, nil
}

// SaveTrace writes t as the JSON document to path, whole or not at all.
func SaveTrace(path string, t *trace.Trace) error {
	out, err := openOutput(path)
	if err != nil {
		return err
	}
	defer out.abort()
	if err := jsontrace.Write(out.f, t); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.commit()
}

// output is a file written under a temporary name and renamed into place at the end, so an
// unwritable path fails before tracing starts and an interrupted run leaves no half file.
type output struct {
	f    *os.File
	path string
}

func openOutput(path string) (*output, error) {
	if path == "" {
		return &output{}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", path, errors.Unwrap(err))
	}
	return &output{f: f, path: path}, nil
}

func (o *output) commit() error {
	// CreateTemp makes the file 0600; a trace is for sharing in a postmortem.
	if err := o.f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := os.Rename(o.f.Name(), o.path); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	o.f = nil
	return nil
}

func (o *output) abort() {
	if o.f != nil {
		o.f.Close()
		os.Remove(o.f.Name())
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Replay builds the trace a run would have produced from recorded events, with no kernel.
func Replay(f trace.Filter, events []trace.Event) *trace.Trace {
	t := &trace.Trace{Schema: trace.Schema, Filter: f, Meta: trace.Meta{Backend: "replay", Events: uint64(len(events))}}
	t.Packets = assemble.Replay(f, assemble.Options{}, events)
	t.Flows = assemble.Summarize(f, t.Packets)
	t.Verdict = diagnose.Verdict(t)
	return t
}
