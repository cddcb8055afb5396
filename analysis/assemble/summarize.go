package assemble

import "github.com/pathtrace/pathtrace/trace"

// Summarize counts packets per flow, a flow being the request-direction tuple, and groups each
// flow's drops by where they happened. Flows and drop sites keep the order they first appear.
func Summarize(f trace.Filter, packets []trace.Packet) []trace.FlowSummary {
	s := NewSummarizer(f)
	for _, p := range packets {
		s.Add(p)
	}
	return s.Flows()
}

// Summarizer counts packets into flows as they complete, so a long run need not keep them.
type Summarizer struct {
	f      trace.Filter
	nat    natMemory
	out    []trace.FlowSummary
	flowAt map[trace.Tuple]int
	dropAt map[trace.Tuple]map[trace.SiteKey]int
}

// NewSummarizer counts packets traced with filter f: by the flow assembly classified each
// into, or, for a packet read from a file (which carries none), as assembly would have.
func NewSummarizer(f trace.Filter) *Summarizer {
	return &Summarizer{f: f, nat: natMemory{}, flowAt: map[trace.Tuple]int{}, dropAt: map[trace.Tuple]map[trace.SiteKey]int{}}
}

func classified(p *trace.Packet) bool {
	return p.FlowTuple.Src.IsValid() || p.FlowTuple.Dst.IsValid() || p.FlowTuple.Proto != trace.ProtoAny
}

// Flows are the flows so far.
func (sm *Summarizer) Flows() []trace.FlowSummary { return sm.out }

// Add counts one packet.
func (sm *Summarizer) Add(p trace.Packet) {
	key := p.FlowTuple
	if !classified(&p) {
		key = oriented(p.Flow, p.Tuple.Tuple)
		if dir, flow, ok := classify(sm.f, sm.nat, p.Hops); ok {
			key = flow
			sm.nat.learn(sm.f, dir, flow, p.Hops)
		}
	}
	i, ok := sm.flowAt[key]
	if !ok {
		i = len(sm.out)
		sm.flowAt[key] = i
		sm.out = append(sm.out, trace.FlowSummary{Tuple: key})
		sm.dropAt[key] = map[trace.SiteKey]int{}
	}
	s := &sm.out[i]
	if p.CopyOf != 0 {
		s.Copies++
	}
	if p.RetransmitOf != 0 {
		s.Retransmissions++
	}
	if p.Flow == trace.Reply {
		s.Replies++
	} else {
		s.Requests++
	}
	switch p.Fate.Outcome {
	case trace.Delivered:
		s.Delivered++
	case trace.LeftHost:
		s.LeftHost++
	case trace.Dropped:
		site := trace.SiteOf(&p)
		dk := site.Key()
		j, ok := sm.dropAt[key][dk]
		if !ok {
			j = len(s.Drops)
			sm.dropAt[key][dk] = j
			s.Drops = append(s.Drops, site)
		}
		s.Drops[j].Count++
	default:
		s.Unknown++
	}
}
