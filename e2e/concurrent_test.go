package e2e

import (
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/trace"
)

// Two engineers (or the DaemonSet and a person) trace two flows on one node at the same time.
// Each run sees its own flow only; both keep their nftables tracing in the namespaces they
// share; one ending does not take the other's programs, maps or tables with it; and once
// both have ended nothing of either is left.
func TestTwoRunsAtOnce(t *testing.T) {
	dropped := standard(t, "twoa", 26)
	if err := dropped.Node.NftDropForward(dropped.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	healthy := standard(t, "twob", 27)

	a := start(t, "--src", dropped.PodIP.String(), "--dst", dropped.ExtIP.String(), "--proto", "icmp")
	b := start(t, "--src", healthy.PodIP.String(), "--dst", healthy.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, dropped, 2); got != 0 {
		t.Fatalf("ping got %d replies through a FORWARD drop rule", got)
	}
	if got := ping(t, healthy, 2); got != 2 {
		t.Fatalf("healthy lab: %d of 2 pings answered", got)
	}
	trB := b.end(syscall.SIGINT)

	// b is gone: a still traces, its nftables table still names the rule.
	if got := ping(t, dropped, 2); got != 0 {
		t.Fatalf("ping got %d replies through a FORWARD drop rule", got)
	}
	trA := a.stop(syscall.SIGINT) // and then nothing of either is left

	outA := a.stdout.String()
	if n := len(packets(trA, trace.Request)); n != 4 {
		t.Errorf("run a traced %d requests, want the 4 sent on its flow (2 of them after run b ended)", n)
	}
	requireDrop(t, trA, outA, dropped.Node.Name(), dropped.NodePodIf, "NETFILTER_DROP", "nf_hook_slow", "nft_do_chain")
	requireRuleNamed(t, trA, outA, "inet", lab.NftFilterTable, "forward", "ip saddr "+dropped.PodIP.String())

	if n := len(packets(trB, trace.Request)); n != 2 {
		t.Errorf("run b traced %d requests, want the 2 sent on its flow", n)
	}
	if trB.Verdict.Outcome != "delivered" {
		t.Errorf("run b's verdict %q (%s), want delivered", trB.Verdict.Outcome, trB.Verdict.Summary)
	}
	for name, tr := range map[string]*trace.Trace{"a": trA, "b": trB} {
		own := tr.Filter
		for _, p := range tr.Packets {
			if _, ok := own.Direction(p.Tuple.Tuple); !ok {
				t.Errorf("run %s traced packet #%d %v, not of its flow %s", name, p.ID, p.Tuple.Tuple, own)
			}
		}
	}
}
