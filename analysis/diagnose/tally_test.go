package diagnose

import (
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// A live run keeps none of its packets in the trace it concludes (they went to the trace file,
// and past --max-packets nowhere): the verdict is made on every packet observed, with the same
// result as on a trace that holds them all.
func TestVerdictOnPacketsObserved(t *testing.T) {
	req, rep := icmp(podIP, extIP), icmp(extIP, podIP)
	var all []trace.Packet
	for range 3000 {
		all = append(all,
			trace.Packet{Flow: trace.Request, Tuple: *req, Fate: trace.Fate{Outcome: trace.Delivered}},
			trace.Packet{Flow: trace.Reply, Tuple: *rep, Fate: trace.Fate{Outcome: trace.Delivered}})
	}
	streamed := New(nil)
	for _, p := range all {
		streamed.Observe(p)
	}
	got := streamed.Verdict(&trace.Trace{})
	want := Verdict(&trace.Trace{Packets: all})
	if got.Outcome != "delivered" || !strings.Contains(got.Summary, "healthy: 3000 request and 3000 reply packets") {
		t.Errorf("verdict on observed packets %+v, want healthy with every packet counted", got)
	}
	if got.Summary != want.Summary || got.Confidence != want.Confidence {
		t.Errorf("observed: %+v\nheld: %+v", got, want)
	}
}
