package text

import (
	"os/exec"
	"strings"
	"testing"
)

// Presentation works on trace values only: a renderer that pulls in the eBPF loader or the
// kernel-facing packages could not run `show` on a machine without them, and would blur
// which layer owns what.
func TestRenderersDoNotImportKernelFacingCode(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/pathtrace/pathtrace/render/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/cilium/ebpf", "github.com/pathtrace/pathtrace/tracer", "github.com/pathtrace/pathtrace/internal", "github.com/vishvananda/", "github.com/mdlayher/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("render depends on %s", dep)
			}
		}
	}
}
