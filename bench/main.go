// Command bench measures what pathtrace costs a node: iperf3 traffic through the lab's
// pod -- node -- ext namespaces with no tracer, with pathtrace attached but filtering the
// traffic out, with pathtrace tracing the flow, and with an equivalent bpftrace script; plus
// attach, detach and drop-to-verdict times and the userspace assembly micro-benchmark. It
// prints a table and saves every measurement as JSON under bench/results/. See bench/README.md.
//
// Run it as root from the repository root (make bench does).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/tracer"
)

// busyLimit is how busy (% of all CPUs) the idle machine may be before a round's numbers are
// flagged as disturbed by other work.
const busyLimit = 10

// A config is one way the node runs while iperf3 measures it.
type config struct {
	Name string
	Kind string // "none", "empty" (programs that do nothing, on pathtrace's hooks), "pathtrace", "bpftrace"
	Args func(t *lab.Topology) []string
	// Setup prepares the lab before the tracer starts; the function it returns undoes it.
	Setup func(t *lab.Topology) (func(), error)
}

var allConfigs = []config{
	{Name: "baseline", Kind: "none"},
	{Name: "empty-bpf", Kind: "empty"},
	{Name: "filtered-out", Kind: "pathtrace", Args: func(*lab.Topology) []string {
		// An address nothing in the lab uses: every hook runs, parses and rejects.
		return []string{"--src", "10.200.200.200"}
	}},
	{Name: "filtered-out-rulesets", Kind: "pathtrace", Args: func(*lab.Topology) []string {
		// As filtered-out, but each namespace has an (empty) nftables table, so pathtrace's
		// marking table is in each: its cost where namespaces have rulesets.
		return []string{"--src", "10.200.200.200"}
	}, Setup: emptyRulesets},
	{Name: "filtered-out-nonft", Kind: "pathtrace", Args: func(*lab.Topology) []string {
		// The same without the nftables tracing table: the BPF programs' cost alone.
		return []string{"--src", "10.200.200.200", "--no-nftrace"}
	}},
	{Name: "matching", Kind: "pathtrace", Args: func(t *lab.Topology) []string {
		// The default budget (--max-rate): a hot flow's packets past it are only counted.
		return []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String()}
	}},
	{Name: "matching-nonft", Kind: "pathtrace", Args: func(t *lab.Topology) []string {
		return []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--no-nftrace"}
	}},
	{Name: "matching-pcapng", Kind: "pathtrace", Args: func(t *lab.Topology) []string {
		// matching with --pcapng: every event carries the packet's first bytes too, and the
		// capture is written at the end. The cost of capturing bytes.
		return []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--pcapng", runDir + "/trace.pcapng"}
	}},
	{Name: "matching-unlimited", Kind: "pathtrace", Args: func(t *lab.Topology) []string {
		// No budget: every packet of the load is traced, as far as the ring buffer takes them.
		return []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--max-rate", "0"}
	}},
	{Name: "bpftrace", Kind: "bpftrace"},
}

// runRecord is one measured iperf3 run.
type runRecord struct {
	Round   int    `json:"round"`
	Traffic string `json:"traffic"`
	Config  string `json:"config"`
	Load    string `json:"loadavg_before"`
	// BusyBefore: share of all CPUs in use just before the run, with nothing of it running.
	BusyBefore float64 `json:"busy_before_pct"`
	// OtherPct: CPU that processes other than the bench's used during the run, as % of all
	// CPUs. Above busyLimit the run is marked disturbed and left out of the summary.
	OtherPct  float64      `json:"other_work_pct"`
	Disturbed bool         `json:"disturbed"`
	Iperf     *iperfResult `json:"iperf,omitempty"`
	Tracer    *tracerRun   `json:"tracer,omitempty"`
	// Programs: with -bpf-stats, what the programs on pathtrace's hooks cost over the window.
	Programs []progCost `json:"bpf_programs,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// tracerRun is what one tracer process cost and delivered.
type tracerRun struct {
	AttachMS     float64 `json:"attach_ms"` // exec to ready file (pathtrace) / "ready" line (bpftrace)
	DetachMS     float64 `json:"detach_ms"` // SIGINT to exit
	WindowS      float64 `json:"window_s"`  // the iperf3 client's wall time
	CPUWindowS   float64 `json:"cpu_window_s"`
	CPUWindowPct float64 `json:"cpu_window_pct"` // of one CPU
	CPUTotalS    float64 `json:"cpu_total_s"`    // whole process life, rusage
	// PeakRSSKB is VmHWM, read every 50ms while the process ran (the last read before exit).
	PeakRSSKB uint64 `json:"peak_rss_kb"`
	// RUMaxRSSKB is wait4's ru_maxrss. Not the peak of the tracer alone: Linux carries the
	// maxrss of the mm replaced at exec (here the bench's own, as Go forks with CLONE_VM)
	// into it, so it is at least the bench's RSS at the time.
	RUMaxRSSKB uint64 `json:"ru_maxrss_kb"`
	// pathtrace: its kernel counters over the window (read from its stats map).
	Kernel       *kernelStats `json:"kernel_window,omitempty"`
	EventsPerSec float64      `json:"events_per_s"` // delivered to userspace, over the window
	// pathtrace: from its --json trace.
	TraceLost          uint64 `json:"trace_lost_events"`
	TraceSkipped       uint64 `json:"trace_skipped"`
	TraceUntracked     uint64 `json:"trace_untracked"`
	TraceRoutesSkipped uint64 `json:"trace_routes_skipped"`
	TraceOverBudget    uint64 `json:"trace_over_budget"` // matching packets not traced, over --max-rate
	TracePackets       int    `json:"trace_packets"`     // packets kept in the trace
	TraceNotKept       uint64 `json:"trace_not_kept"`    // completed past --max-packets: counted only
	TraceHops          int    `json:"trace_hops"`
	TraceBytes         int64  `json:"trace_bytes"`
	// bpftrace
	Lines   uint64 `json:"lines,omitempty"`
	Lost    uint64 `json:"lost,omitempty"`
	Matched uint64 `json:"matched,omitempty"`
}

type results struct {
	Started       time.Time        `json:"started"`
	Finished      time.Time        `json:"finished"`
	Kernel        string           `json:"kernel"`
	CPUs          int              `json:"cpus"`
	Pathtrace     string           `json:"pathtrace_binary"`
	Commit        string           `json:"commit"`
	Dirty         bool             `json:"dirty"`
	Duration      string           `json:"run_duration"`
	Rounds        int              `json:"rounds"`
	BPFStats      bool             `json:"bpf_stats"` // per-program run time accounting was on (-bpf-stats)
	LoadStart     string           `json:"loadavg_start"`
	WaitedS       float64          `json:"waited_for_quiet_s"`
	LoadEnd       string           `json:"loadavg_end"`
	Notes         []string         `json:"notes,omitempty"`
	Runs          []runRecord      `json:"runs"`
	Drop          *dropResult      `json:"drop_to_verdict,omitempty"`
	FloodDrop     *floodDropResult `json:"flood_drop,omitempty"`
	Micro         []microResult    `json:"micro,omitempty"`
	MicroCmd      string           `json:"micro_command,omitempty"`
	MicroOtherPct float64          `json:"micro_other_work_pct"`
	Summary       []summaryRow     `json:"summary"`
	Timings       timingSummary    `json:"timings"`
	Targets       []targetResult   `json:"targets"`
}

type bench struct {
	topo     *lab.Topology
	bin      string
	script   string
	duration time.Duration
	bpfStats bool
	res      *results
}

func main() {
	var (
		duration   = flag.Duration("duration", 5*time.Second, "length of each iperf3 run (whole seconds)")
		rounds     = flag.Int("rounds", 3, "rounds; each round runs every config once per traffic kind, interleaved")
		bin        = flag.String("bin", "bin/pathtrace", "pathtrace binary")
		script     = flag.String("bpftrace-script", "bench/flow.bt", "bpftrace comparison script")
		outDir     = flag.String("out", "bench/results", "where the JSON results go")
		trafficL   = flag.String("traffic", "udp,tcp", "traffic kinds, of: udp (64-byte datagrams, unlimited rate), tcp")
		configL    = flag.String("configs", "baseline,empty-bpf,filtered-out,filtered-out-rulesets,filtered-out-nonft,matching,matching-nonft,matching-unlimited,matching-pcapng,bpftrace", "configs to run (also matching-rate-N: matching with --max-rate N)")
		goBin      = flag.String("go", "go", "go command, for the micro-benchmark")
		benchtime  = flag.String("benchtime", "500ms", "go test -benchtime for the micro-benchmark")
		count      = flag.Int("count", 3, "go test -count for the micro-benchmark (the median is reported)")
		drops      = flag.Int("drops", 5, "pings for the drop-to-verdict measurement (0: skip)")
		floodDrops = flag.Int("flood-drops", 3, "trials of the drop-in-a-flood measurement, at the default --max-rate (0: skip)")
		micro      = flag.Bool("micro", true, "run the userspace micro-benchmark")
		microOnly  = flag.Bool("micro-only", false, "run only the userspace micro-benchmark: no lab, no kernel, no root (make bench-micro)")
		force      = flag.Bool("force", false, "run even when another pathtrace's BPF programs are loaded")
		waitQuiet  = flag.Duration("wait-quiet", 15*time.Second, "before each run, wait up to this long for other work to leave the CPUs idle")
		waitTotal  = flag.Duration("wait-quiet-total", 90*time.Second, "wait at most this long for quiet over the whole bench")
		bpfStats   = flag.Bool("bpf-stats", false, "measure each hook program's run time and calls (kernel bpf_stats; adds two clock reads per program call to every config with programs)")
	)
	flag.Parse()
	if *microOnly {
		if err := runMicroOnly(*goBin, *benchtime, *count, *outDir); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*duration, *rounds, *bin, *script, *outDir, *trafficL, *configL, *goBin, *benchtime, *drops, *floodDrops, *micro, *force, *bpfStats, *waitQuiet, *waitTotal, *count); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, rounds int, bin, script, outDir, trafficL, configL, goBin, benchtime string, drops, floodDrops int, micro, force, bpfStats bool, waitQuiet, waitTotal time.Duration, count int) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, BPF)")
	}
	if duration < time.Second || duration%time.Second != 0 {
		return errors.New("-duration must be whole seconds, at least 1s")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("pathtrace binary: %w (make build)", err)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return errors.New("iperf3 not found (scripts/bench-deps.sh installs it)")
	}
	var trs []traffic
	for _, n := range strings.Split(trafficL, ",") {
		t, ok := traffics[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("unknown traffic %q", n)
		}
		trs = append(trs, t)
	}
	var cfgs []config
	for _, n := range strings.Split(configL, ",") {
		c, err := configNamed(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		cfgs = append(cfgs, c)
	}

	res := &results{Started: time.Now().UTC(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Pathtrace: bin,
		Duration: duration.String(), Rounds: rounds, BPFStats: bpfStats, LoadStart: loadavg()}
	res.Commit, res.Dirty = gitState()
	note := func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		res.Notes = append(res.Notes, s)
		fmt.Fprintln(os.Stderr, "bench: note:", s)
	}

	progs, err := tracer.LoadedPrograms()
	if err != nil {
		return err
	}
	if len(progs) > 0 {
		msg := fmt.Sprintf("%d pathtrace-like BPF programs (on_*, fe_*...) are already loaded: another pathtrace (an e2e run?) is tracing on this machine", len(progs))
		if !force {
			return errors.New(msg + "; its probes would be measured too, and its leftover checks would see ours. Wait for it, or -force")
		}
		note("%s; measured anyway (-force)", msg)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// bpftrace finds tracepoints through tracefs; mount it if nobody has.
	if hasConfig(cfgs, "bpftrace") {
		if _, err := exec.LookPath("bpftrace"); err != nil {
			note("bpftrace not found: the bpftrace config is skipped (scripts/bench-deps.sh installs it)")
			cfgs = withoutConfig(cfgs, "bpftrace")
		} else if unmount, err := ensureTracefs(); err != nil {
			note("tracefs: %v: the bpftrace config is skipped", err)
			cfgs = withoutConfig(cfgs, "bpftrace")
		} else if unmount != nil {
			note("mounted tracefs on /sys/kernel/tracing for bpftrace (unmounted at the end)")
			defer unmount()
		}
	}

	if bpfStats {
		stats, err := enableBPFStats()
		if err != nil {
			return err
		}
		defer stats.Close()
		note("bpf_stats on: every program call also reads the clock twice, so configs with programs are slower than without -bpf-stats")
	}

	b := &bench{bin: bin, script: script, duration: duration, bpfStats: bpfStats, res: res}
	topo, err := lab.Standard("ptbench", 60)
	if err != nil {
		return err
	}
	defer topo.Close()
	b.topo = topo
	fmt.Fprintf(os.Stderr, "bench: lab pod %s (%s) -> node %s -> ext %s (%s); %d rounds x %d traffic x %d configs x %s\n",
		topo.Pod.Name(), topo.PodIP, topo.Node.Name(), topo.Ext.Name(), topo.ExtIP, rounds, len(trs), len(cfgs), duration)

	// Warm up: neighbour entries, iperf3's first start, page cache.
	for _, tr := range trs {
		if _, err := runIperf(topo, tr, time.Second, nil, nil); err != nil {
			return fmt.Errorf("warm-up %s: %w", tr.Name, err)
		}
	}

	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		if progs, err := tracer.LoadedPrograms(); err != nil {
			note("round %d: %v", r+1, err)
		} else if len(progs) > 0 {
			note("round %d: another pathtrace's BPF programs (%d) were loaded before it: they ran on its packets too", r+1, len(progs))
		}
		for _, tr := range trs {
			// Rotate the order each round, so no config always follows the same one.
			for i := range cfgs {
				if ctx.Err() != nil {
					break
				}
				c := cfgs[(i+r)%len(cfgs)]
				busy := idleCheck(250 * time.Millisecond)
				for t0 := time.Now(); busy > busyLimit && time.Since(t0) < waitQuiet && time.Duration(res.WaitedS*float64(time.Second)) < waitTotal && ctx.Err() == nil; {
					fmt.Fprintf(os.Stderr, "bench: %.0f%% of the CPUs busy with other work; waiting for them to be idle\n", busy)
					busy = idleCheck(time.Second)
					res.WaitedS++
				}
				rec := b.runOne(r+1, tr, c)
				rec.BusyBefore = busy
				res.Runs = append(res.Runs, rec)
				fmt.Fprintln(os.Stderr, "bench:", rec.brief())
			}
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}

	if drops > 0 {
		d, err := b.dropToVerdict(drops)
		if err != nil {
			note("drop-to-verdict: %v", err)
		}
		res.Drop = d
	}
	if floodDrops > 0 {
		d, err := b.floodDrop(floodDrops)
		if err != nil {
			note("drop in a flood: %v", err)
		}
		res.FloodDrop = d
	}
	if micro {
		measureMicro(res, goBin, benchtime, count, note)
	}
	return finish(res, outDir, trs, cfgs)
}

// finish summarizes res, prints its table and saves it under outDir.
func finish(res *results, outDir string, trs []traffic, cfgs []config) error {
	res.Finished = time.Now().UTC()
	res.LoadEnd = loadavg()
	summarize(res, trs, cfgs)
	printTable(os.Stdout, res)
	path, err := save(outDir, res)
	if err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	return nil
}

// configNamed is the config of that name: one of allConfigs, or matching-rate-N, which is
// matching with --max-rate N (to see what a budget costs).
func configNamed(name string) (config, error) {
	for _, c := range allConfigs {
		if c.Name == name {
			return c, nil
		}
	}
	if n, ok := strings.CutPrefix(name, "matching-rate-"); ok {
		if _, err := strconv.ParseUint(n, 10, 32); err == nil {
			return config{Name: name, Kind: "pathtrace", Args: func(t *lab.Topology) []string {
				return []string{"--src", t.PodIP.String(), "--dst", t.ExtIP.String(), "--max-rate", n}
			}}, nil
		}
	}
	return config{}, fmt.Errorf("unknown config %q", name)
}

// measureMicro runs the userspace micro-benchmarks into res, noting other work on the machine.
func measureMicro(res *results, goBin, benchtime string, count int, note func(string, ...any)) {
	// Compile first, so the idle check and the measurement see no compiler.
	exec.Command(goBin, "test", "-run", "^$", "-count", "1", "./internal/run/", "./tracer/").Run()
	busy := idleCheck(500 * time.Millisecond)
	snap := procSnapshot()
	t0 := time.Now()
	m, cmdline, err := runMicro(goBin, benchtime, count)
	// The go command and the test binary are the bench's children: other work is the rest.
	res.MicroOtherPct = 100 * otherCPU(snap, procSnapshot(), os.Getpid(), time.Since(t0)).Seconds() /
		(time.Since(t0).Seconds() * float64(runtime.NumCPU()))
	if busy > busyLimit || res.MicroOtherPct > busyLimit {
		note("micro-benchmark: other work used %.0f%% of the CPUs before it and %.0f%% during it: its figures are low by that", busy, res.MicroOtherPct)
	}
	res.MicroCmd = cmdline
	if err != nil {
		note("micro-benchmark: %v", err)
	}
	res.Micro = m
}

// runMicroOnly is -micro-only: the userspace micro-benchmarks and their targets, nothing else.
func runMicroOnly(goBin, benchtime string, count int, outDir string) error {
	res := &results{Started: time.Now().UTC(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(), LoadStart: loadavg()}
	res.Commit, res.Dirty = gitState()
	measureMicro(res, goBin, benchtime, count, func(format string, a ...any) {
		s := fmt.Sprintf(format, a...)
		res.Notes = append(res.Notes, s)
		fmt.Fprintln(os.Stderr, "bench: note:", s)
	})
	return finish(res, outDir, nil, nil)
}

func hasConfig(cs []config, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func withoutConfig(cs []config, name string) []config {
	var out []config
	for _, c := range cs {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

// ensureTracefs mounts tracefs on /sys/kernel/tracing when it is not there; the returned
// function unmounts it again (nil when nothing was mounted).
func ensureTracefs() (func(), error) {
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
		return nil, nil
	}
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		return nil, fmt.Errorf("mount tracefs on %s: %w", dir, err)
	}
	return func() { unix.Unmount(dir, 0) }, nil
}

// runOne measures one iperf3 run under config c.
func (b *bench) runOne(round int, tr traffic, c config) (rec runRecord) {
	rec = runRecord{Round: round, Traffic: tr.Name, Config: c.Name, Load: loadavg()}
	var snap0 map[int]procCPU
	defer func() {
		if rec.Iperf == nil || snap0 == nil {
			return
		}
		// The processes' CPU at the end of the window is read here, after the tracer exited:
		// the window's other work is what other processes used from its start to now.
		wall := time.Since(rec.Iperf.WallStart)
		other := otherCPU(snap0, procSnapshot(), os.Getpid(), wall)
		rec.OtherPct = 100 * other.Seconds() / (wall.Seconds() * float64(runtime.NumCPU()))
		rec.Disturbed = rec.OtherPct > busyLimit
	}()
	mark := func() { snap0 = procSnapshot() }
	fail := func(err error) runRecord {
		rec.Error = err.Error()
		return rec
	}
	switch c.Kind {
	case "none":
		r, err := runIperf(b.topo, tr, b.duration, mark, nil)
		if err != nil {
			return fail(err)
		}
		rec.Iperf = &r

	case "empty":
		e, err := attachEmpty()
		if err != nil {
			return fail(err)
		}
		var p0, p1 map[string]progCounter
		r, err := runIperf(b.topo, tr, b.duration, func() {
			mark()
			if b.bpfStats {
				p0 = e.counters()
			}
		}, func() {
			if b.bpfStats {
				p1 = e.counters()
			}
		})
		e.Close()
		if b.bpfStats {
			rec.Programs = progCosts(p0, p1)
		}
		if err != nil {
			return fail(err)
		}
		rec.Iperf = &r

	case "pathtrace":
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return fail(err)
		}
		defer devnull.Close()
		if c.Setup != nil {
			undo, err := c.Setup(b.topo)
			if err != nil {
				return fail(err)
			}
			defer undo()
		}
		p, err := startPathtrace(b.bin, c.Args(b.topo), devnull)
		if err != nil {
			return fail(err)
		}
		t := &tracerRun{AttachMS: ms(p.ready.Sub(p.start))}
		var cpu0, cpu1 time.Duration
		var st0, st1 kernelStats
		var ok0, ok1 bool
		var p0, p1 map[string]progCounter
		r, ierr := runIperf(b.topo, tr, b.duration, func() {
			mark()
			cpu0, _ = cpuTime(p.pid())
			st0, ok0 = p.counters()
			if b.bpfStats {
				p0 = pathtraceCounters()
			}
		}, func() {
			cpu1, _ = cpuTime(p.pid())
			st1, ok1 = p.counters()
			if b.bpfStats {
				p1 = pathtraceCounters()
			}
		})
		stop, tf, serr := p.stop()
		if ierr != nil {
			return fail(ierr)
		}
		if serr != nil {
			return fail(serr)
		}
		rec.Iperf = &r
		if b.bpfStats {
			rec.Programs = progCosts(p0, p1)
		}
		t.fill(r, cpu0, cpu1, stop)
		if ok0 && ok1 {
			k := st1.sub(st0)
			t.Kernel = &k
			t.EventsPerSec = float64(k.Events) / t.WindowS
		}
		t.TraceLost, t.TraceSkipped, t.TraceUntracked = tf.LostEvents, tf.Skipped, tf.Untracked
		t.TracePackets, t.TraceHops, t.TraceBytes = tf.Packets, tf.Hops, tf.Bytes
		t.TraceRoutesSkipped, t.TraceNotKept, t.TraceOverBudget = tf.RoutesSkip, tf.NotKept, tf.OverBudget
		rec.Tracer = t

	case "bpftrace":
		p, err := startBpftrace(b.script, hostOrderU32(b.topo.PodIP), hostOrderU32(b.topo.ExtIP))
		if err != nil {
			return fail(err)
		}
		t := &tracerRun{AttachMS: ms(p.ready.Sub(p.start))}
		var cpu0, cpu1 time.Duration
		var l0, l1 uint64
		r, ierr := runIperf(b.topo, tr, b.duration, func() {
			mark()
			cpu0, _ = cpuTime(p.pid())
			l0 = p.lineCount()
		}, func() {
			cpu1, _ = cpuTime(p.pid())
			l1 = p.lineCount()
		})
		stop, lines, lost, matched, serr := p.stop()
		if ierr != nil {
			return fail(ierr)
		}
		if serr != nil {
			return fail(serr)
		}
		rec.Iperf = &r
		t.fill(r, cpu0, cpu1, stop)
		t.EventsPerSec = float64(l1-l0) / t.WindowS
		t.Lines, t.Lost, t.Matched = lines, lost, matched
		rec.Tracer = t
	}
	return rec
}

func (t *tracerRun) fill(r iperfResult, cpu0, cpu1 time.Duration, s stopResult) {
	t.WindowS = r.WallEnd.Sub(r.WallStart).Seconds()
	t.CPUWindowS = (cpu1 - cpu0).Seconds()
	t.CPUWindowPct = 100 * t.CPUWindowS / t.WindowS
	t.CPUTotalS = s.CPU.Seconds()
	t.PeakRSSKB, t.RUMaxRSSKB = s.VmHWMKB, s.MaxRSS
	t.DetachMS = ms(s.Detach)
}

func (r runRecord) brief() string {
	s := fmt.Sprintf("round %d %s %-18s", r.Round, r.Traffic, r.Config)
	if r.Error != "" {
		return s + " ERROR " + r.Error
	}
	if r.Disturbed {
		s += fmt.Sprintf(" [DISTURBED: other work %.0f%%]", r.OtherPct)
	}
	s += fmt.Sprintf(" thru %9.0f pkt/s sent %9.0f pkt/s %8.1f Mbit/s", r.Iperf.ThruPPS, r.Iperf.SentPPS, r.Iperf.BitsPerS/1e6)
	if t := r.Tracer; t != nil {
		s += fmt.Sprintf(" | attach %.0fms detach %.0fms cpu %.0f%% events %.0f/s rss %dMiB", t.AttachMS, t.DetachMS, t.CPUWindowPct, t.EventsPerSec, t.PeakRSSKB/1024)
		if t.Kernel != nil {
			s += fmt.Sprintf(" lost %d skipped %d over budget %d", t.Kernel.Lost, t.Kernel.Skipped, t.Kernel.OverBudget)
		}
		if t.Lost > 0 {
			s += fmt.Sprintf(" lost %d", t.Lost)
		}
	}
	return s
}

// hostOrderU32 is how a BPF program reading iphdr.saddr as a u32 sees addr on this machine.
func hostOrderU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func gitState() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "", false
	}
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0
}

// save writes the results as <outDir>/<UTC timestamp>.json.
func save(outDir string, res *results) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(outDir, res.Started.Format("20060102T150405Z")+".json")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
