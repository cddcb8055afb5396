package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// progCost is what the program on one of pathtrace's hooks cost during a run's window, by the
// kernel's own accounting (bpf_stats: run count and run time per program). Packets/s show the
// cost only as a difference between configs; this shows where it goes, per call.
type progCost struct {
	Hook      string  `json:"hook"`
	Program   string  `json:"program"`
	Calls     uint64  `json:"calls"`
	RunNS     uint64  `json:"run_ns"`
	NSPerCall float64 `json:"ns_per_call"`
}

type progCounter struct {
	name     string
	calls, n uint64
}

// pathtraceHooks maps pathtrace's program names (without their build's _cast/_btf/_raw) to
// their tracepoints.
var pathtraceHooks = map[string]string{
	"on_receive": "netif_receive_skb", "on_queue": "net_dev_queue", "on_xmit": "net_dev_start_xmit",
	"on_fib": "fib_table_lookup", "on_kfree": "kfree_skb", "on_consume": "consume_skb",
}

// enableBPFStats turns the kernel's per-program run time accounting on until the closer is
// closed. It costs two clock reads per program call, in every config with programs.
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run time statistics: %w", err)
	}
	return c, nil
}

// pathtraceCounters reads the counters of pathtrace's hook programs (on_*), by hook.
func pathtraceCounters() map[string]progCounter {
	out := map[string]progCounter{}
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil {
			continue
		}
		base := info.Name
		for _, build := range []string{"_cast", "_btf", "_raw"} {
			base = strings.TrimSuffix(base, build)
		}
		if hook, ok := pathtraceHooks[base]; ok {
			out[hook] = progCounter{name: info.Name, calls: st.RunCount, n: uint64(st.Runtime)}
		}
	}
}

// counters reads the counters of the empty programs, by hook.
func (e *emptyPrograms) counters() map[string]progCounter {
	out := map[string]progCounter{}
	for i, p := range e.progs {
		if st, err := p.Stats(); err == nil {
			out[e.hooks[i]] = progCounter{name: "empty", calls: st.RunCount, n: uint64(st.Runtime)}
		}
	}
	return out
}

// progCosts is what each hook's program cost between two readings, in floorHooks' order.
func progCosts(before, after map[string]progCounter) []progCost {
	var out []progCost
	for _, hook := range floorHooks {
		a, ok := after[hook]
		if !ok {
			continue
		}
		b := before[hook]
		c := progCost{Hook: hook, Program: a.name, Calls: a.calls - b.calls, RunNS: a.n - b.n}
		if c.Calls > 0 {
			c.NSPerCall = float64(c.RunNS) / float64(c.Calls)
		}
		out = append(out, c)
	}
	return out
}

// progSummary is a summary row's program costs: medians over its runs.
type progSummary struct {
	Hook         string  `json:"hook"`
	NSPerCall    float64 `json:"ns_per_call"`
	CallsPerPkt  float64 `json:"calls_per_packet"` // per packet through the node (thru)
	NSPerPacket  float64 `json:"ns_per_packet"`
	RunsMeasured int     `json:"runs"`
}

// summarizeProgs gives, per hook and in all ("all hooks"), the medians over runs of ns per
// call, calls per packet and ns per packet.
func summarizeProgs(runs []*runRecord) []progSummary {
	type acc struct{ ns, calls, perPkt []float64 }
	by := map[string]*acc{}
	var hooks []string
	for _, r := range runs {
		if len(r.Programs) == 0 || r.Iperf == nil || r.Iperf.ThruPkts == 0 {
			continue
		}
		pkts := float64(r.Iperf.ThruPkts)
		var allCalls, allNS uint64
		for _, c := range r.Programs {
			a := by[c.Hook]
			if a == nil {
				a = &acc{}
				by[c.Hook] = a
				hooks = append(hooks, c.Hook)
			}
			a.ns = append(a.ns, c.NSPerCall)
			a.calls = append(a.calls, float64(c.Calls)/pkts)
			a.perPkt = append(a.perPkt, float64(c.RunNS)/pkts)
			allCalls += c.Calls
			allNS += c.RunNS
		}
		a := by["all hooks"]
		if a == nil {
			a = &acc{}
			by["all hooks"] = a
		}
		if allCalls > 0 {
			a.ns = append(a.ns, float64(allNS)/float64(allCalls))
		}
		a.calls = append(a.calls, float64(allCalls)/pkts)
		a.perPkt = append(a.perPkt, float64(allNS)/pkts)
	}
	if len(hooks) == 0 {
		return nil
	}
	slices.SortFunc(hooks, func(a, b string) int { return slices.Index(floorHooks, a) - slices.Index(floorHooks, b) })
	var out []progSummary
	for _, h := range append(hooks, "all hooks") {
		a := by[h]
		out = append(out, progSummary{Hook: h, NSPerCall: median(a.ns), CallsPerPkt: median(a.calls),
			NSPerPacket: median(a.perPkt), RunsMeasured: len(a.perPkt)})
	}
	return out
}

func printProgTable(w io.Writer, res *results) {
	have := false
	for _, r := range res.Summary {
		have = have || len(r.Programs) > 0
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "\nBPF programs (kernel bpf_stats over each run's window; medians; per packet = per packet through the node):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "traffic\tconfig\thook\truns\tns/call\tcalls/pkt\tns/pkt\t")
	for _, r := range res.Summary {
		for _, p := range r.Programs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.2f\t%.0f\t\n", r.Traffic, r.Config, p.Hook, p.RunsMeasured, p.NSPerCall, p.CallsPerPkt, p.NSPerPacket)
		}
	}
	tw.Flush()
}
