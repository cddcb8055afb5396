package assemble

import "github.com/pathtrace/pathtrace/trace"

type dropKey struct {
	flow                                trace.Direction
	reason, location, ifname, netnsName string
}

// Summarize counts packets per flow, a flow being the request-direction tuple, and groups each
// flow's drops by where they happened. Flows and drop sites keep the order they first appear.
func Summarize(f trace.Filter, packets []trace.Packet) []trace.FlowSummary {
	var out []trace.FlowSummary
	flowAt := map[trace.Tuple]int{}
	dropAt := map[trace.Tuple]map[dropKey]int{}
	nat := natMemory{}
	for _, p := range packets {
		key := oriented(p.Flow, p.Tuple.Tuple)
		if dir, flow, ok := classify(f, nat, p.Hops); ok {
			key = flow
			nat.learn(f, dir, flow, p.Hops)
		}
		i, ok := flowAt[key]
		if !ok {
			i = len(out)
			flowAt[key] = i
			out = append(out, trace.FlowSummary{Tuple: key})
			dropAt[key] = map[dropKey]int{}
		}
		s := &out[i]
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
			dk := dropKey{p.Flow, p.Fate.Reason, p.Fate.Location, p.Fate.Ifname, p.Fate.NetnsName}
			j, ok := dropAt[key][dk]
			if !ok {
				j = len(s.Drops)
				dropAt[key][dk] = j
				s.Drops = append(s.Drops, trace.DropSite{
					Flow: p.Flow, Reason: dk.reason, Location: dk.location,
					Ifname: dk.ifname, NetnsName: dk.netnsName,
				})
			}
			s.Drops[j].Count++
		default:
			s.Unknown++
		}
	}
	return out
}
