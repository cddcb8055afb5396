package merge

// The merged trace's meta and verdict.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/trace"
)

// meta describes the merged trace: the nodes, what each kernel could show, and the counts
// that say how complete it is.
func (m *merger) meta(start int64) trace.Meta {
	meta := trace.Meta{StartedAt: time.Unix(0, start).UTC()}
	var backends []string
	var degradedOrder []string
	degraded := map[string][]string{}
	var probeOrder []string
	probes := map[string]*probeOn{}
	for i, n := range m.nodes {
		tm := n.in.Trace.Meta
		info := m.infos[i]
		info.Name, info.Hostname, info.Kernel, info.StartedAt, info.Source = n.name, tm.Hostname, tm.Kernel, tm.StartedAt, n.in.Source
		info.Packets = len(n.in.Trace.Packets)
		meta.Nodes = append(meta.Nodes, info)
		if end := tm.EndedAt; !end.IsZero() {
			if e := time.Unix(0, end.UnixNano()-n.offset).UTC(); e.After(meta.EndedAt) {
				meta.EndedAt = e
			}
		}
		if tm.Backend != "" && !slices.Contains(backends, tm.Backend) {
			backends = append(backends, tm.Backend)
		}
		for _, d := range tm.Degraded {
			if _, ok := degraded[d]; !ok {
				degradedOrder = append(degradedOrder, d)
			}
			degraded[d] = append(degraded[d], n.name)
		}
		for _, p := range tm.Probes {
			st, ok := probes[p.Name]
			if !ok {
				st = &probeOn{probe: p}
				probes[p.Name] = st
				probeOrder = append(probeOrder, p.Name)
			}
			if p.Attached {
				st.on++
			} else {
				st.errs = append(st.errs, strings.TrimSuffix("on "+n.name+": "+p.Error, ": "))
			}
		}
		// The probes were sent from one node (the source pod's): the journey keeps them, and
		// says where they left.
		if tm.Probe != nil && meta.Probe == nil {
			pr := *tm.Probe
			pr.Node = n.name
			meta.Probe = &pr
		}
		meta.LostEvents += tm.LostEvents
		meta.Untracked += tm.Untracked
		meta.Skipped += tm.Skipped
		meta.RoutesSkipped += tm.RoutesSkipped
		meta.OverBudget += tm.OverBudget
		// Budgets may differ between nodes: the highest says how many a second a node traced.
		meta.MaxRate = max(meta.MaxRate, tm.MaxRate)
		meta.NotKept += tm.NotKept
	}
	// A probe is attached when it was on every node; otherwise the header says where it failed.
	for _, name := range probeOrder {
		st := probes[name]
		p := st.probe
		p.Attached, p.Error = st.on == len(m.nodes), ""
		if !p.Attached {
			if missing := len(m.nodes) - st.on - len(st.errs); missing > 0 {
				st.errs = append(st.errs, fmt.Sprintf("not tried on %d of the nodes", missing))
			}
			p.Error = strings.Join(st.errs, "; ")
		}
		meta.Probes = append(meta.Probes, p)
	}
	meta.Backend = strings.Join(backends, ", ")
	for _, d := range degradedOrder {
		if len(degraded[d]) == len(m.nodes) {
			meta.Degraded = append(meta.Degraded, d)
		} else {
			meta.Degraded = append(meta.Degraded, "on "+strings.Join(degraded[d], ", ")+": "+d)
		}
	}
	return meta
}

type probeOn struct {
	probe trace.Probe
	on    int
	errs  []string
}

// verdict diagnoses the merged journey again. Where the drop it is about happened on one node
// and that node's own verdict was about the same drop, that verdict is kept: it was made while
// tracing, with the node's state read there (sysctls, rules, tc programs) that no file holds.
func (m *merger) verdict(t *trace.Trace) trace.Verdict {
	d := diagnose.New(nil)
	for _, p := range t.Packets {
		d.Observe(p)
	}
	v := d.Verdict(t)
	// The diagnosis speaks of one host; this journey crossed several.
	v.Summary = strings.ReplaceAll(v.Summary, "on this host", "on any of these nodes")
	site, ok := d.Site()
	if !ok {
		return v
	}
	for _, n := range m.nodes {
		if n.name != site.Node {
			continue
		}
		own := diagnose.New(nil)
		for _, p := range n.in.Trace.Packets {
			own.Observe(p)
		}
		ownSite, ok := own.Site()
		nv := n.in.Trace.Verdict
		ownSite.Node, ownSite.Count = site.Node, site.Count
		if !ok || ownSite != site || nv.Outcome != "dropped" {
			return v
		}
		nv.Summary = "on node " + n.name + ": " + nv.Summary
		return nv
	}
	return v
}
