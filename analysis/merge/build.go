package merge

// Building: one journey per matched group, its hops on the first node's timeline.

import (
	"slices"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/trace"
)

// build makes the merged trace: every journey and every packet seen on one node only, on the
// first node's clock, counted and diagnosed again.
func (m *merger) build(inputs []Input) (*trace.Trace, Report) {
	// The merged timeline starts at the earliest start, on the reference clock.
	var start int64
	for i, n := range m.nodes {
		s := n.in.Trace.Meta.StartedAt.UnixNano() - n.offset
		if i == 0 || s < start {
			start = s
		}
	}
	var journeys [][]ref
	for _, g := range m.groups {
		if len(g) > 0 {
			journeys = append(journeys, g)
		}
	}
	report := Report{Joined: len(journeys)}
	for i := range m.nodes {
		for j := range m.nodes[i].packets {
			if m.nodes[i].packets[j].group < 0 {
				journeys = append(journeys, []ref{{i, j}})
				report.Alone++
			}
		}
	}

	type built struct {
		pk    trace.Packet
		first uint64
		refs  []ref
	}
	out := make([]built, 0, len(journeys))
	for _, j := range journeys {
		pk, reordered := m.journey(j, start)
		if reordered {
			report.Reordered++
		}
		out = append(out, built{pk: pk, first: firstTime(pk), refs: m.causal(j)})
	}
	slices.SortStableFunc(out, func(x, y built) int {
		switch {
		case x.first != y.first:
			if x.first < y.first {
				return -1
			}
			return 1
		case x.refs[0].node != y.refs[0].node:
			return x.refs[0].node - y.refs[0].node
		}
		return x.pk.ID - y.pk.ID
	})
	// Packets are numbered again; a copy or a retransmission names its original by the new number.
	newID := map[ref]int{}
	for i, b := range out {
		for _, r := range b.refs {
			newID[r] = i + 1
		}
	}
	byOldID := func(node, id int) int {
		for j, p := range m.nodes[node].packets {
			if p.p.ID == id {
				return newID[ref{node, j}]
			}
		}
		return 0
	}
	packets := make([]trace.Packet, len(out))
	for i, b := range out {
		p := b.pk
		p.ID = i + 1
		p.CopyOf, p.RetransmitOf = 0, 0
		for _, r := range b.refs {
			src := m.at(r).p
			if src.CopyOf != 0 && p.CopyOf == 0 {
				p.CopyOf = byOldID(r.node, src.CopyOf)
			}
			if src.RetransmitOf != 0 && p.RetransmitOf == 0 {
				p.RetransmitOf = byOldID(r.node, src.RetransmitOf)
			}
			// Only the node that sent the probes knows them: its mark holds for the journey.
			p.FromProbe = p.FromProbe || src.FromProbe
		}
		packets[i] = p
	}

	t := &trace.Trace{
		Schema:  trace.Schema,
		Filter:  inputs[0].Trace.Filter,
		Meta:    m.meta(start),
		Packets: packets,
	}
	t.Flows = assemble.Summarize(t.Filter, t.Packets)
	t.Verdict = m.verdict(t)
	report.Nodes = t.Meta.Nodes
	return t, report
}

func firstTime(p trace.Packet) uint64 {
	var first uint64
	for i, h := range p.Hops {
		if i == 0 || h.TimeNS < first {
			first = h.TimeNS
		}
	}
	return first
}

// causal orders a journey's packets as the packet travelled: a node it left comes before one
// it did not leave, whatever the clocks say; among the rest, the corrected time decides.
func (m *merger) causal(j []ref) []ref {
	j = slices.Clone(j)
	slices.SortStableFunc(j, func(x, y ref) int {
		px, py := m.at(x), m.at(y)
		if px.leftHost != py.leftHost {
			if px.leftHost {
				return -1
			}
			return 1
		}
		tx, ty := px.first-m.nodes[x.node].offset, py.first-m.nodes[y.node].offset
		switch {
		case tx < ty:
			return -1
		case tx > ty:
			return 1
		}
		return x.node - y.node
	})
	return j
}

// journey makes one merged packet of a journey's packets, start being the merged timeline's
// zero. reordered says a later node's hops had to be moved after the packet left the node
// before, where the estimated clocks put them earlier.
func (m *merger) journey(j []ref, start int64) (trace.Packet, bool) {
	j = m.causal(j)
	first := m.at(j[0]).p
	out := trace.Packet{Flow: first.Flow, Tuple: first.Tuple, ID: first.ID}
	reordered := false
	var sentAt int64 = -1 // when the packet left the previous node, on the merged timeline
	for _, r := range j {
		n := &m.nodes[r.node]
		pk := m.at(r)
		onTimeline := func(wall int64) int64 { return wall - n.offset - start }
		shift := int64(0)
		if sentAt >= 0 && onTimeline(pk.first) < sentAt {
			shift, reordered = sentAt-onTimeline(pk.first), true
		}
		nodeStart := n.in.Trace.Meta.StartedAt.UnixNano()
		for _, h := range pk.p.Hops {
			h.Node = n.name
			h.TimeNS = uint64(onTimeline(nodeStart+int64(h.TimeNS)) + shift)
			out.Hops = append(out.Hops, h)
		}
		sentAt = onTimeline(pk.send) + shift
		out.Fate = pk.p.Fate
		out.Fate.Node = n.name
		out.Incomplete = out.Incomplete || pk.p.Incomplete
	}
	return out, reordered
}
