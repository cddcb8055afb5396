package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// The README's first command ends in `pathtrace demo`: it must build its lab, find the drop,
// explain it and leave nothing behind.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t, "build the demo's network namespaces")
	js := filepath.Join(t.TempDir(), "demo.json")
	out, err := combinedOutput(t, exec.Command(binary, "demo", "--color", "never", "--json", js))
	if err != nil {
		t.Fatalf("pathtrace demo: %v\n%s", err, out)
	}
	text := string(out)
	requireLine(t, text, "=> DROPPED on pathtrace-demo-node veth-pod:", "ip_error+0x")
	requireLine(t, text, "Verdict: DROPPED")
	requireLine(t, text, "sysctl -w net.ipv4.ip_forward=1")
	requireLine(t, text, "demo: lab removed")

	tr, err := jsontrace.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Packets) != 3 || tr.Verdict.Outcome != "dropped" {
		t.Errorf("demo trace: %d packets, verdict %q; want 3 dropped", len(tr.Packets), tr.Verdict.Outcome)
	}
	for _, p := range tr.Packets {
		if p.Fate.Outcome != trace.Dropped || !reasonIs(p.Fate.Reason, "IP_INADDRERRORS") {
			t.Errorf("demo packet #%d fate %+v", p.ID, p.Fate)
		}
	}
	left, _ := filepath.Glob("/run/netns/pathtrace-demo-*")
	if len(left) > 0 {
		t.Errorf("demo left namespaces behind: %v", left)
	}
	requireNothingLeft(t)
}
