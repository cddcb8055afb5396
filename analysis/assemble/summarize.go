package assemble

import "github.com/pathtrace/pathtrace/trace"

// Summarize counts packets per flow, a flow being the request-direction tuple, and groups each
// flow's drops by where they happened. Flows and drop sites keep the order they first appear.
// Packets read from a file carry no flow of their own: they are classified here, in order, as
// assembly would have.
func Summarize(f trace.Filter, packets []trace.Packet) []trace.FlowSummary {
	s := NewSummarizer()
	nat := natMemory{}
	for _, p := range packets {
		if !classified(&p) {
			p.FlowTuple = oriented(p.Flow, p.Tuple.Tuple)
			if dir, flow, ok := classify(f, nat, p.Hops); ok {
				p.FlowTuple = flow
				nat.learn(f, dir, flow, p.Hops)
			}
		}
		s.Add(p)
	}
	return s.Flows()
}

func classified(p *trace.Packet) bool {
	return p.FlowTuple.Src.IsValid() || p.FlowTuple.Dst.IsValid() || p.FlowTuple.Proto != trace.ProtoAny
}

// Summarizer counts packets into flows as they complete, so a long run need not keep them.
type Summarizer struct {
	out    []trace.FlowSummary
	flowAt map[trace.Tuple]int
	dropAt map[trace.Tuple]map[trace.SiteKey]int
}

// NewSummarizer counts the packets an Assembler hands out, by the flow it classified each into.
func NewSummarizer() *Summarizer {
	return &Summarizer{flowAt: map[trace.Tuple]int{}, dropAt: map[trace.Tuple]map[trace.SiteKey]int{}}
}

// Flows are the flows so far.
func (sm *Summarizer) Flows() []trace.FlowSummary { return sm.out }

// Add counts one packet.
func (sm *Summarizer) Add(p trace.Packet) {
	key := p.FlowTuple
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
