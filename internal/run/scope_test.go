package run

import (
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

func TestScopeKeepsEverythingWithoutNames(t *testing.T) {
	s := newScope(nil)
	ev := trace.Event{SKB: 1, Hop: trace.Hop{Place: trace.Place{NetnsName: "anywhere"}}}
	if !s.admit(&ev) || ev.First {
		t.Errorf("an unscoped run filtered or marked %+v", ev)
	}
}

// An sk_buff that leaves the scope and comes back is a new packet, as it would be on a node of
// its own; events outside are dropped, and sk_buffs that never left keep their marks.
func TestScopeMarksReturningSKBAsFirst(t *testing.T) {
	s := newScope([]string{"node1", "pod1"})
	steps := []struct {
		skb       uint64
		netns     string
		first     bool // as the kernel marked it
		admitted  bool
		wantFirst bool
	}{
		{1, "pod1", true, true, true},
		{1, "node1", false, true, false},
		{1, "node2", false, false, false}, // left for the other node
		{2, "node1", false, true, false},  // another sk_buff is not affected
		{1, "node2", false, false, false},
		{1, "node1", false, true, true}, // back: a new packet here
		{1, "pod1", false, true, false}, // and only its first event says so
		{1, "", false, true, false},     // no namespace known: it is where it last was
		{1, "node2", false, false, false},
		{1, "", false, false, false},
		{1, "node1", false, true, true},
		{0, "node2", false, false, false},
		{0, "node1", false, true, false}, // route events have no sk_buff
	}
	for i, st := range steps {
		ev := trace.Event{SKB: st.skb, First: st.first, Hop: trace.Hop{Place: trace.Place{NetnsName: st.netns}}}
		if got := s.admit(&ev); got != st.admitted {
			t.Errorf("step %d (%d in %s): admitted %v, want %v", i, st.skb, st.netns, got, st.admitted)
		}
		if st.admitted && ev.First != st.wantFirst {
			t.Errorf("step %d (%d in %s): first %v, want %v", i, st.skb, st.netns, ev.First, st.wantFirst)
		}
	}
}
