package tracer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/dropreason"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// Config is what the tracer needs to start.
type Config struct {
	Filter trace.Filter
	// KernelBTF is the kernel's BTF file; "" means /sys/kernel/btf/vmlinux.
	KernelBTF string
	// Kallsyms and HostNetns default to /proc/kallsyms and netns.HostCandidates.
	Kallsyms  string
	HostNetns []string
	// NetnsDirs are where named namespaces live; default netns.DefaultDirs.
	NetnsDirs []string
	// RingBufferBytes sizes the event ring buffer (a power of two); 0 keeps the default 8 MiB.
	RingBufferBytes uint32
	// Backend chooses how function-level hops are captured: auto, fentry, kprobe, tracepoint.
	Backend string
	// Snap has every hop carry the packet's headers, read from its IP header (--pcapng).
	Snap bool
	// MaxRate is the budget: at most this many new packets a second start being traced, in
	// bursts of at most as many; the rest are counted (Stats.OverBudget). 0: no budget.
	MaxRate uint64
}

// Tracer holds the loaded programs and the state needed to decode their events.
type Tracer struct {
	maps     map[string]*ebpf.Map
	probes   []loadedProbe
	info     []trace.Probe
	degraded []string
	reader   *ringbuf.Reader
	startNS  uint64
	started  time.Time // the wall clock at startNS
	backend  string

	reasons  dropreason.Names
	netns    *netns.Namer
	syms     *symbols // being read from the end of Open on
	names    nameCache
	received uint64 // records read from the ring buffer

	closeOnce sync.Once
	closeErr  error
}

// Open loads the programs with the filter and attaches them. On failure nothing stays loaded.
func Open(cfg Config) (_ *Tracer, err error) {
	kernel, err := loadKernelBTF(cfg.KernelBTF)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it, and
	// RemoveMemlock then changes nothing.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the locked-memory limit for BPF maps: %w", err)
	}
	if cfg.HostNetns == nil {
		cfg.HostNetns = netns.HostCandidates
	}
	if cfg.NetnsDirs == nil {
		cfg.NetnsDirs = netns.DefaultDirs
	}
	t := &Tracer{}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	if t.netns, err = netns.NewNamer(cfg.HostNetns, cfg.NetnsDirs...); err != nil {
		return nil, err
	}
	if !netns.AnyDir(cfg.NetnsDirs...) {
		t.degraded = append(t.degraded, fmt.Sprintf("no named network namespaces (%s absent): namespaces are shown as netns:<inode>",
			strings.Join(cfg.NetnsDirs, ", ")))
	}
	t.reasons, err = dropreason.FromBTF(kernel)
	if errors.Is(err, dropreason.ErrNoReasons) {
		t.degraded = append(t.degraded, "kernel has no drop reasons (before 5.17): drops show their location only")
	} else if err != nil {
		return nil, err
	}

	spec, err := bpf.LoadPathtrace()
	if err != nil {
		return nil, fmt.Errorf("load BPF object: %w", err)
	}
	if err := spec.Variables[bpf.PathtraceVarCFG].Set(kernelConfig(cfg)); err != nil {
		return nil, fmt.Errorf("configure filter: %w", err)
	}
	if cfg.RingBufferBytes != 0 {
		spec.Maps[bpf.PathtraceMapEvents].MaxEntries = cfg.RingBufferBytes
	}

	t.maps = map[string]*ebpf.Map{}
	// Every program shares these; each is loaded on its own (see loadHook).
	for _, name := range []string{bpf.PathtraceMapEvents, bpf.PathtraceMapTracked, bpf.PathtraceMapStats,
		bpf.PathtraceMapLearned, bpf.PathtraceMapGates, bpf.PathtraceMapScratch, bpf.PathtraceMapNfCalls,
		bpf.PathtraceMapBudget, bpf.PathtraceMapLeftOut, bpf.PathtraceMapLeftSlots} {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return nil, fmt.Errorf("create map %s: %w", name, err)
		}
		t.maps[name] = m
	}

	// Take the clock before attaching so no event predates it. The wall clock is read with it,
	// so a hop's wall time is StartedAt + TimeNS (merging traces of several nodes relies on it).
	t.startNS, t.started, _ = clockPair()
	var missing []string
	for _, h := range hooks {
		lp, info, err := loadHook(spec, h, t.maps, kernel)
		t.info = append(t.info, info)
		if err != nil {
			if h.required {
				return nil, err
			}
			missing = append(missing, h.tracepoint)
			continue
		}
		t.probes = append(t.probes, lp)
	}
	if len(missing) > 0 {
		t.degraded = append(t.degraded, fmt.Sprintf("tracepoints unavailable: %s: those hops are not shown", strings.Join(missing, ", ")))
	}
	if t.backend, err = t.attachFuncs(spec, kernel, cfg.Backend); err != nil {
		return nil, err
	}

	// Loading the programs left some 30 MB of garbage (the object's parsed ELF and BTF, the
	// kernel's BTF): hand it back to the system before the ring buffer's mapping (twice its
	// size, resident at once) adds to what this process holds.
	debug.FreeOSMemory()
	if t.reader, err = ringbuf.NewReader(t.maps[bpf.PathtraceMapEvents]); err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	// The kernel's symbols are read now, not while the programs load, whose garbage would add
	// to the peak of memory; see Symbols.
	t.syms = loadSymbols(cfg.Kallsyms)
	return t, nil
}

// clockPair reads the BPF programs' clock (CLOCK_MONOTONIC) and the wall clock at one instant,
// as nearly as it can: the wall clock between two monotonic reads, mono their midpoint, the
// tightest of a few tries; within is how far apart the two reads were. Read one after the
// other, a preempted thread (a loaded VM) put hundreds of microseconds between them, and two
// runs on one clock then merged as if their nodes' clocks differed by that much.
func clockPair() (mono uint64, wall time.Time, within time.Duration) {
	within = time.Duration(math.MaxInt64)
	for range 8 {
		before := monotonicNow()
		w := time.Now()
		after := monotonicNow()
		if d := time.Duration(after - before); d < within {
			mono, wall, within = before+(after-before)/2, w, d
		}
	}
	return mono, wall, within
}

func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Probes says which hooks attached and how.
func (t *Tracer) Probes() []trace.Probe { return t.info }

// Degraded lists, one line each, what this kernel cannot show.
func (t *Tracer) Degraded() []string { return t.degraded }

// Backend names how hops are captured.
func (t *Tracer) Backend() string { return t.backend }

// StartedAt is the wall-clock time at which Hop.TimeNS is 0.
func (t *Tracer) StartedAt() time.Time { return t.started }

// NowNS is the current time on the trace's clock (Hop.TimeNS).
func (t *Tracer) NowNS() uint64 { return monotonicNow() - t.startNS }

// Stats are the kernel side's counters.
type Stats struct {
	Events    uint64 // written to the ring buffer
	Lost      uint64 // found the ring buffer full (or the CPU's working space busy)
	TrackFull uint64 // packets the tracking map could not hold
	Learned   uint64 // NAT translations learned
	Skipped   uint64 // packets not started because the ring buffer was filling up
	// RoutesSkipped counts route lookups not reported for the same reason.
	RoutesSkipped uint64
	// OverBudget counts matching packets not started because the budget (Config.MaxRate) was
	// spent; RoutesOverBudget their route lookups, not reported either.
	OverBudget       uint64
	RoutesOverBudget uint64
}

// Stats sums the per-CPU counters.
func (t *Tracer) Stats() (Stats, error) { return ReadStats(t.maps[bpf.PathtraceMapStats]) }

// ReadStats sums the per-CPU counters of a pathtrace stats map, this process's or, by map ID,
// another's (the benchmark reads a running pathtrace's).
func ReadStats(m *ebpf.Map) (Stats, error) {
	var s Stats
	for idx, dst := range map[bpf.PathtraceStatIndex]*uint64{
		bpf.PathtraceStatIndexSTAT_EVENTS:             &s.Events,
		bpf.PathtraceStatIndexSTAT_LOST:               &s.Lost,
		bpf.PathtraceStatIndexSTAT_TRACK_FULL:         &s.TrackFull,
		bpf.PathtraceStatIndexSTAT_LEARNED:            &s.Learned,
		bpf.PathtraceStatIndexSTAT_SKIPPED:            &s.Skipped,
		bpf.PathtraceStatIndexSTAT_ROUTES_SKIPPED:     &s.RoutesSkipped,
		bpf.PathtraceStatIndexSTAT_OVER_BUDGET:        &s.OverBudget,
		bpf.PathtraceStatIndexSTAT_ROUTES_OVER_BUDGET: &s.RoutesOverBudget,
	} {
		var per []uint64
		if err := m.Lookup(idx, &per); err != nil {
			return s, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// Run delivers events until ctx ends, then detaches the probes and drains what the kernel had
// already written, so the last packets of a run are not cut off. tick is called about every
// 100ms with the current trace time, for expiring idle packets.
func (t *Tracer) Run(ctx context.Context, onEvent func(trace.Event), tick func(nowNS uint64)) error {
	// An ended ctx wakes a read waiting for events at once, not at its deadline: the end of a
	// run (Ctrl-C) is not delayed by up to a tick.
	stop := context.AfterFunc(ctx, func() { _ = t.reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	var ev trace.Event
	draining := false
	nextTick := time.Now().Add(tickEvery)
	t.reader.SetDeadline(nextTick)
	doTick := func() {
		if tick != nil {
			tick(t.NowNS())
		}
		nextTick = time.Now().Add(tickEvery)
		t.reader.SetDeadline(nextTick)
	}
	for {
		if !draining && ctx.Err() != nil {
			draining = true
			t.detach()
			// Programs that were running as they were detached finish within microseconds.
			t.reader.SetDeadline(time.Now().Add(drainGrace))
		}
		err := t.reader.ReadInto(&rec)
		switch {
		case err == nil:
			t.received++
			if t.decode(rec.RawSample, &ev) {
				onEvent(ev)
			}
			// Under a steady stream of events the deadline never passes: tick by the clock,
			// looked at every few hundred events.
			if !draining && t.received%256 == 0 && time.Now().After(nextTick) {
				doTick()
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			if draining {
				return nil
			}
			doTick()
		case errors.Is(err, ringbuf.ErrFlushed):
			// ctx ended: the next turn detaches and drains.
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

const (
	tickEvery = 100 * time.Millisecond
	// drainGrace is how long past detaching Run still waits for events: what is in the ring
	// buffer is read however long that takes, and programs that were running as they were
	// detached finish within microseconds.
	drainGrace = 20 * time.Millisecond
)

// Symbols waits until the kernel's symbols, which Open started reading, are read, and says
// why they could not be (drop locations are then shown as addresses). Called before tracing
// starts, it makes sure that no drop waits for them; it takes less time than the rest of a
// run's setup.
func (t *Tracer) Symbols() error {
	_, err := t.syms.wait()
	return err
}

// Received is how many events were read from the kernel's ring buffer so far.
func (t *Tracer) Received() uint64 { return t.received }

func (t *Tracer) detach() {
	for i := range t.probes {
		t.probes[i].Close()
	}
	t.probes = nil
}

// Close detaches and unloads everything. Safe to call more than once.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		t.detach()
		if t.reader != nil {
			errs = append(errs, t.reader.Close())
		}
		for _, m := range t.maps {
			errs = append(errs, m.Close())
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}
