package analysis

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pathtrace/pathtrace/"

// kernelFacing is what touches the kernel: the eBPF loader, netlink, the tracer and the
// orchestration around it.
var kernelFacing = []string{
	"github.com/cilium/ebpf",
	"github.com/vishvananda/",
	"github.com/mdlayher/",
	"github.com/google/nftables",
	module + "tracer",
	module + "internal",
	module + "bpf",
}

// The tree says which code runs without a kernel: the model (trace/), the analysis (analysis/)
// and the renderers (render/) must build and run on a laptop that only reads a saved trace.
// A renderer also stays apart from the analysis, so output is made from trace values alone.
func TestLayering(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	for _, c := range []struct {
		pkgs   string
		banned []string
	}{
		{module + "trace/...", append([]string{module + "analysis", module + "render"}, kernelFacing...)},
		{module + "analysis/...", append([]string{module + "render"}, kernelFacing...)},
		{module + "render/...", append([]string{module + "analysis"}, kernelFacing...)},
	} {
		out, err := exec.Command(gobin, "list", "-deps", c.pkgs).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", c.pkgs, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list %s listed nothing", c.pkgs)
		}
		for _, dep := range deps {
			for _, b := range c.banned {
				if strings.HasPrefix(dep, b) {
					t.Errorf("%s depends on %s", c.pkgs, dep)
				}
			}
		}
	}
}
