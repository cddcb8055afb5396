package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// summaryRow is one traffic x config over the rounds: medians, and ratios to the baseline
// run of the same round (the median of those per-round ratios).
type summaryRow struct {
	Traffic   string  `json:"traffic"`
	Config    string  `json:"config"`
	Runs      int     `json:"runs"`
	Errors    int     `json:"errors"`
	Disturbed int     `json:"disturbed"` // runs other work disturbed (left out when others were not)
	Used      int     `json:"used"`      // runs the medians are of
	Paired    int     `json:"paired"`    // rounds whose baseline was used too: the ratios' sample
	ThruPPS   float64 `json:"thru_pps"`
	SentPPS   float64 `json:"sent_pps"`
	Mbps      float64 `json:"mbit_per_s"`
	ThruRatio float64 `json:"thru_pps_vs_baseline"` // 0: no paired baseline
	// ThruVsFiltered is thru pkt/s against the same round's filtered-out run: what tracing
	// costs on top of the filter.
	ThruVsFiltered float64 `json:"thru_pps_vs_filtered_out"`
	SentRatio      float64 `json:"sent_pps_vs_baseline"`
	MbpsRatio      float64 `json:"mbit_vs_baseline"`
	CPUPct         float64 `json:"tracer_cpu_pct"`
	EventsPerSec   float64 `json:"events_per_s"`
	Lost           float64 `json:"lost_per_run"`        // pathtrace: meta.lost_events; bpftrace: "Lost N events"
	Skipped        float64 `json:"skipped_per_run"`     // pathtrace: meta.skipped
	OverBudget     float64 `json:"over_budget_per_run"` // pathtrace: meta.over_budget
	PeakRSSKB      uint64  `json:"peak_rss_kb"`         // max over runs of VmHWM
	AttachMS       float64 `json:"attach_ms"`
	DetachMS       float64 `json:"detach_ms"`
	TraceMB        float64 `json:"trace_mb"`
	Packets        float64 `json:"trace_packets"`
	// Programs: with -bpf-stats, the hook programs' cost, per hook and for all hooks.
	Programs []progSummary `json:"bpf_programs,omitempty"`
	Tracer   bool          `json:"-"`
}

type timingSummary struct {
	AttachMS         float64 `json:"attach_ms"` // pathtrace, exec to ready file, all its runs
	AttachN          int     `json:"attach_n"`
	DetachFilteredMS float64 `json:"detach_filtered_ms"` // SIGINT to exit, filtered-out runs
	DetachMatchingMS float64 `json:"detach_matching_ms"` // SIGINT to exit, matching runs (trace written)
	BpftraceAttachMS float64 `json:"bpftrace_attach_ms"`
	DropToVerdictMS  float64 `json:"drop_to_verdict_ms"`
	// FloodDropMS: a drop starting in a flood traced at the default budget, to its DROPPED line.
	FloodDropMS float64 `json:"flood_drop_ms"`
}

type targetResult struct {
	What   string  `json:"what"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(res *results, trs []traffic, cfgs []config) {
	// A row's numbers come from its runs that other work did not disturb, when there are any;
	// otherwise from all its runs (and the row says so).
	used := map[[2]string][]*runRecord{}
	for _, tr := range trs {
		for _, c := range cfgs {
			var ok, quiet []*runRecord
			for i := range res.Runs {
				r := &res.Runs[i]
				if r.Traffic != tr.Name || r.Config != c.Name || r.Error != "" || r.Iperf == nil {
					continue
				}
				ok = append(ok, r)
				if !r.Disturbed {
					quiet = append(quiet, r)
				}
			}
			if len(quiet) > 0 {
				ok = quiet
			}
			used[[2]string{tr.Name, c.Name}] = ok
		}
	}
	base := map[string]map[int]*iperfResult{}     // traffic -> round -> baseline
	filtered := map[string]map[int]*iperfResult{} // traffic -> round -> filtered-out
	for _, tr := range trs {
		base[tr.Name], filtered[tr.Name] = map[int]*iperfResult{}, map[int]*iperfResult{}
		for _, r := range used[[2]string{tr.Name, "baseline"}] {
			base[tr.Name][r.Round] = r.Iperf
		}
		for _, r := range used[[2]string{tr.Name, "filtered-out"}] {
			filtered[tr.Name][r.Round] = r.Iperf
		}
	}
	var attach, detachF, detachM, btAttach []float64
	for _, tr := range trs {
		for _, c := range cfgs {
			row := summaryRow{Traffic: tr.Name, Config: c.Name, Tracer: c.Kind == "pathtrace" || c.Kind == "bpftrace"}
			for _, r := range res.Runs {
				if r.Traffic == tr.Name && r.Config == c.Name {
					row.Runs++
					if r.Error != "" || r.Iperf == nil {
						row.Errors++
					}
					if r.Disturbed {
						row.Disturbed++
					}
				}
			}
			var thru, sent, mbps, rThru, rSent, rMbps, rFiltered, cpu, evs, lost, skipped, over, att, det, mb, pk []float64
			for _, r := range used[[2]string{tr.Name, c.Name}] {
				row.Used++
				thru, sent, mbps = append(thru, r.Iperf.ThruPPS), append(sent, r.Iperf.SentPPS), append(mbps, r.Iperf.BitsPerS/1e6)
				if b := base[tr.Name][r.Round]; b != nil && b.ThruPPS > 0 && b.SentPPS > 0 && b.BitsPerS > 0 {
					rThru = append(rThru, r.Iperf.ThruPPS/b.ThruPPS)
					rSent = append(rSent, r.Iperf.SentPPS/b.SentPPS)
					rMbps = append(rMbps, r.Iperf.BitsPerS/b.BitsPerS)
				}
				if f := filtered[tr.Name][r.Round]; f != nil && f.ThruPPS > 0 {
					rFiltered = append(rFiltered, r.Iperf.ThruPPS/f.ThruPPS)
				}
				t := r.Tracer
				if t == nil {
					continue
				}
				cpu, evs, att, det = append(cpu, t.CPUWindowPct), append(evs, t.EventsPerSec), append(att, t.AttachMS), append(det, t.DetachMS)
				row.PeakRSSKB = max(row.PeakRSSKB, t.PeakRSSKB)
				switch c.Kind {
				case "pathtrace":
					lost, skipped = append(lost, float64(t.TraceLost)), append(skipped, float64(t.TraceSkipped))
					over = append(over, float64(t.TraceOverBudget))
					mb, pk = append(mb, float64(t.TraceBytes)/1e6), append(pk, float64(t.TracePackets)+float64(t.TraceNotKept))
					attach = append(attach, t.AttachMS)
					if strings.HasPrefix(c.Name, "matching") {
						detachM = append(detachM, t.DetachMS)
					} else {
						detachF = append(detachF, t.DetachMS)
					}
				case "bpftrace":
					lost = append(lost, float64(t.Lost))
					btAttach = append(btAttach, t.AttachMS)
				}
			}
			row.ThruPPS, row.SentPPS, row.Mbps = median(thru), median(sent), median(mbps)
			row.ThruRatio, row.SentRatio, row.MbpsRatio = median(rThru), median(rSent), median(rMbps)
			row.Paired = len(rThru)
			row.ThruVsFiltered = median(rFiltered)
			row.CPUPct, row.EventsPerSec = median(cpu), median(evs)
			row.Lost, row.Skipped, row.OverBudget = median(lost), median(skipped), median(over)
			row.AttachMS, row.DetachMS = median(att), median(det)
			row.TraceMB, row.Packets = median(mb), median(pk)
			row.Programs = summarizeProgs(used[[2]string{tr.Name, c.Name}])
			res.Summary = append(res.Summary, row)
		}
	}
	res.Timings = timingSummary{AttachMS: median(attach), AttachN: len(attach), DetachFilteredMS: median(detachF),
		DetachMatchingMS: median(detachM), BpftraceAttachMS: median(btAttach)}
	if res.Drop != nil {
		res.Timings.DropToVerdictMS = res.Drop.MedianMS
	}
	if d := res.FloodDrop; d != nil {
		res.Timings.FloodDropMS = d.MedianMS
		if d.Seen > 0 {
			res.Targets = append(res.Targets, targetResult{What: "udp flood, default --max-rate: a drop starting in it, to its DROPPED line",
				Value: d.MedianMS, Target: 1000, Unit: " ms", Met: d.Seen == d.Trials && d.MedianMS <= 1000})
		}
	}

	for _, row := range res.Summary {
		if row.Config == "matching" && row.Traffic == "udp" && row.ThruRatio != 0 {
			res.Targets = append(res.Targets, targetResult{What: "udp matching, default --max-rate: packets/s through the node vs baseline",
				Value: 100 * row.ThruRatio, Target: 90, Unit: "%", Met: row.ThruRatio >= 0.90})
		}
		if row.Config == "matching" && row.Traffic == "udp" && row.ThruVsFiltered != 0 {
			// Not the target: what a matched packet not traced costs over the filter.
			res.Targets = append(res.Targets, targetResult{What: "udp matching, default --max-rate: packets/s vs filtered-out",
				Value: 100 * row.ThruVsFiltered, Target: 90, Unit: "%", Met: row.ThruVsFiltered >= 0.90})
		}
		if row.Config != "filtered-out" || row.ThruRatio == 0 {
			continue
		}
		res.Targets = append(res.Targets, targetResult{What: row.Traffic + " filtered-out: packets/s through the node vs baseline",
			Value: 100 * row.ThruRatio, Target: 98, Unit: "%", Met: row.ThruRatio >= 0.98})
		if row.Traffic == "tcp" {
			res.Targets = append(res.Targets, targetResult{What: "tcp filtered-out: throughput vs baseline",
				Value: 100 * row.MbpsRatio, Target: 98, Unit: "%", Met: row.MbpsRatio >= 0.98})
		}
	}
	for _, m := range res.Micro {
		switch m.Name {
		case "stream":
			res.Targets = append(res.Targets, targetResult{What: "userspace assembly (BenchmarkAssemble/stream)",
				Value: m.EventsPerSec, Target: 1e6, Unit: "events/s", Met: m.EventsPerSec >= 1e6})
		case "decode+stream":
			res.Targets = append(res.Targets, targetResult{What: "userspace decode+assembly (BenchmarkDecodeAssemble)",
				Value: m.EventsPerSec, Target: 2e6, Unit: "events/s", Met: m.EventsPerSec >= 2e6})
		case "live":
			res.Targets = append(res.Targets, targetResult{What: "userspace live pipeline (BenchmarkLive)",
				Value: m.EventsPerSec, Target: 1e6, Unit: "events/s", Met: m.EventsPerSec >= 1e6})
		}
	}
}

func human(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func pct(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*r)
}

func printTable(w io.Writer, res *results) {
	dirty := ""
	if res.Dirty {
		dirty = "+dirty"
	}
	fmt.Fprintf(w, "pathtrace bench  %s  kernel %s  %d CPUs  commit %s%s\n", res.Started.Format("2006-01-02 15:04Z"), res.Kernel, res.CPUs, res.Commit, dirty)
	if len(res.Runs) > 0 { // none with -micro-only
		fmt.Fprintf(w, "%d rounds x %s iperf3 runs per config, interleaved; medians; ratios are per-round vs that round's baseline\n", res.Rounds, res.Duration)
		disturbed, total := 0, 0
		for _, r := range res.Runs {
			total++
			if r.Disturbed {
				disturbed++
			}
		}
		fmt.Fprintf(w, "loadavg at start %s, at end %s; runs disturbed by other work on the machine (>%d%% of the CPUs): %d of %d",
			res.LoadStart, res.LoadEnd, busyLimit, disturbed, total)
		if disturbed > 0 {
			fmt.Fprint(w, " (left out of a row's medians where it has undisturbed runs; see 'runs')")
		}
		fmt.Fprint(w, "\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "traffic\tconfig\truns\tthru pkt/s\tvs base\tsent pkt/s\tvs base\tMbit/s\tvs base\ttracer CPU\tevents/s\tlost/run\tskipped/run\tover budget/run\tpeak RSS\tattach\tdetach\t")
		for _, r := range res.Summary {
			runs := fmt.Sprintf("%d/%d", r.Used, r.Runs)
			if r.Used > 0 && r.Used == r.Disturbed {
				runs += " (all disturbed)"
			}
			cells := []string{r.Traffic, r.Config, runs, human(r.ThruPPS), pct(r.ThruRatio), human(r.SentPPS), pct(r.SentRatio),
				fmt.Sprintf("%.0f", r.Mbps), pct(r.MbpsRatio)}
			if r.Tracer {
				skipped, over := fmt.Sprintf("%.0f", r.Skipped), human(r.OverBudget)
				if r.Config == "bpftrace" {
					skipped, over = "-", "-"
				}
				cells = append(cells, fmt.Sprintf("%.1f%%", r.CPUPct), human(r.EventsPerSec), fmt.Sprintf("%.0f", r.Lost), skipped, over,
					fmt.Sprintf("%.0f MiB", float64(r.PeakRSSKB)/1024), fmt.Sprintf("%.0f ms", r.AttachMS), fmt.Sprintf("%.0f ms", r.DetachMS))
			} else {
				cells = append(cells, "-", "-", "-", "-", "-", "-", "-", "-")
			}
			if r.Errors > 0 {
				cells[1] += fmt.Sprintf(" (%d failed)", r.Errors)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		tw.Flush()
		printProgTable(w, res)

		t := res.Timings
		fmt.Fprintln(w)
		fmt.Fprintf(w, "attach (exec -> ready file), pathtrace:        median %.0f ms over %d runs\n", t.AttachMS, t.AttachN)
		fmt.Fprintf(w, "detach (SIGINT -> exit), filtered-out:          median %.0f ms\n", t.DetachFilteredMS)
		fmt.Fprintf(w, "detach (SIGINT -> exit), matching (trace saved): median %.0f ms\n", t.DetachMatchingMS)
		if t.BpftraceAttachMS > 0 {
			fmt.Fprintf(w, "attach, bpftrace (exec -> BEGIN):               median %.0f ms\n", t.BpftraceAttachMS)
		}
		if d := res.Drop; d != nil {
			fmt.Fprintf(w, "drop-to-verdict (ping sent -> DROPPED block):   median %.1f ms, %d of %d pings seen, each %s ms\n",
				d.MedianMS, d.Seen, d.Pings, joinF(d.PerPing))
		}
	} else {
		fmt.Fprintf(w, "loadavg at start %s, at end %s\n", res.LoadStart, res.LoadEnd)
	}
	if d := res.FloodDrop; d != nil {
		fmt.Fprintf(w, "drop in a udp flood at the default --max-rate (forwarding off -> DROPPED block): median %.1f ms, %d of %d trials seen, each %s ms; over budget per trial %v\n",
			d.MedianMS, d.Seen, d.Trials, joinF(d.PerTrial), d.OverBudget)
	}
	if len(res.Micro) > 0 {
		fmt.Fprintf(w, "\nuserspace, %s:\n", res.MicroCmd)
		for _, m := range res.Micro {
			fmt.Fprintf(w, "  %-12s %9s events/s  %6.0f ns/event  %5.0f allocs/op  (median of %d: %s)\n", m.Name, human(m.EventsPerSec), m.NsPerEvent,
				m.AllocsPerOp, len(m.Samples), humans(m.Samples))
		}
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, tg := range res.Targets {
		verdict := "MISSED"
		if tg.Met {
			verdict = "met"
		}
		v := fmt.Sprintf("%.1f%s", tg.Value, tg.Unit)
		tv := fmt.Sprintf(">= %.0f%s", tg.Target, tg.Unit)
		switch tg.Unit {
		case "events/s":
			v, tv = human(tg.Value)+" events/s", ">= "+human(tg.Target)
		case " ms": // a time: at most the target
			tv = fmt.Sprintf("<= %.0f ms", tg.Target)
		}
		fmt.Fprintf(w, "  %-60s %-18s %-10s %s\n", tg.What, v, tv, verdict)
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func joinF(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}

func humans(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = human(x)
	}
	return strings.Join(s, ", ")
}
