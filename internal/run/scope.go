package run

import "github.com/pathtrace/pathtrace/trace"

// scope keeps only the events of some network namespaces (--netns-scope): in a lab whose
// "nodes" are namespaces of one kernel, a run then takes the trace one node would take alone.
type scope struct {
	keep map[string]bool
	// away holds the sk_buffs last seen outside the scope. One that comes back in is a new
	// packet: on nodes of their own the packet would arrive in a new sk_buff, and here the
	// kernel may have freed and reused it out of sight (its first event was filtered out).
	away map[uint64]bool
}

// maxAway bounds what a long scoped run remembers; forgetting only costs the first-event mark.
const maxAway = 1 << 16

// newScope keeps the named namespaces; no names keep everything (nil).
func newScope(names []string) *scope {
	if len(names) == 0 {
		return nil
	}
	s := &scope{keep: map[string]bool{}, away: map[uint64]bool{}}
	for _, n := range names {
		s.keep[n] = true
	}
	return s
}

// admit says whether ev is kept, and marks an sk_buff returning to the scope as a new one.
func (s *scope) admit(ev *trace.Event) bool {
	if s == nil {
		return true
	}
	if ev.Hop.NetnsName == "" {
		// The kernel could not say where (no device, no socket): where the sk_buff last was.
		return ev.SKB == 0 || !s.away[ev.SKB]
	}
	if !s.keep[ev.Hop.NetnsName] {
		if ev.SKB != 0 {
			if len(s.away) >= maxAway {
				clear(s.away)
			}
			s.away[ev.SKB] = true
		}
		return false
	}
	if ev.SKB != 0 && s.away[ev.SKB] {
		ev.First = true
		delete(s.away, ev.SKB)
	}
	return true
}
