package tracer

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
)

// TestHookBuilds runs each build of the hooks on its own, though a kernel keeps only the first
// it accepts: they read kernel memory each their own way (bpf_rdonly_cast, plain loads, probe
// reads) and must load, attach and report a packet the same way. The first needs the
// bpf_rdonly_cast kfunc (6.2+): a kernel without it must refuse that build for that reason,
// leaving nothing loaded. UDP to a closed loopback port is dropped (NO_SOCKET); the drop and
// the hops before it must carry the packet's tuple, and nothing outside the filter may be
// reported.
func TestHookBuilds(t *testing.T) {
	needRoot(t)
	all := hookBuilds
	defer func() { hookBuilds = all }()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	_, castErr := kernel.AnyTypeByName("bpf_rdonly_cast")
	for i, b := range all {
		t.Run(b.name, func(t *testing.T) {
			hookBuilds = []hookBuild{b}
			// The first build needs the bpf_rdonly_cast kfunc; any kernel with BTF takes the others.
			seeDropWith(t, b, i > 0 || castErr == nil)
		})
	}
}

// seeDropWith traces a dropped loopback packet with the programs of build b only. must: the
// kernel is expected to accept b.
func seeDropWith(t *testing.T, b hookBuild, must bool) {
	port := closedLoopbackPort(t)
	filter := testFilter(t, "127.0.0.1", "127.0.0.1", trace.ProtoUDP, port)
	before := onPrograms(t)
	tr, err := Open(Config{Filter: filter})
	if !must {
		// A kernel without the kfunc must refuse the build for that, and keep none of it: the
		// loader then goes on to the next build.
		if err == nil {
			tr.Close()
			t.Fatalf("Open with the %s build only succeeded on a kernel without bpf_rdonly_cast", b.name)
		}
		if !strings.Contains(err.Error(), "bpf_rdonly_cast") {
			t.Errorf("refused for another reason than the missing kfunc: %v", err)
		}
		assertNoneLeft(t, before, nil)
		t.Logf("refused, as it must be on this kernel: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("Open with the %s build only: %v", b.name, err)
	}
	defer tr.Close()
	// The tracepoint hooks come first (function probes, where the kernel has them, follow).
	probes := tr.Probes()
	if len(probes) < len(hooks) || len(tr.probes) < len(hooks) {
		t.Fatalf("%d probes (%d loaded), want at least the %d hooks", len(probes), len(tr.probes), len(hooks))
	}
	for i, h := range hooks {
		p := probes[i]
		if !p.Attached || p.Program != b.kind {
			t.Errorf("probe %s: attached=%v program=%q error=%q; want %s", p.Name, p.Attached, p.Program, p.Error, b.kind)
		}
		if info, err := tr.probes[i].prog.Info(); err != nil || info.Name != b.prog(h) {
			t.Errorf("probe %s runs program %v (%v), want %s", p.Name, info, err, b.prog(h))
		}
	}

	events, done, stop := runUntilStopped(t, tr)

	conn, want := dialLoopback(t, port)

	got, drop := awaitDrop(t, conn, "pathtrace "+b.name, events, done)
	if (kernelHasDropReasons(t) && drop.Hop.Reason != "NO_SOCKET") || drop.Hop.Probe != "skb:kfree_skb" {
		t.Errorf("drop %q from %s, want NO_SOCKET from skb:kfree_skb", drop.Hop.Reason, drop.Hop.Probe)
	}
	if drop.Hop.Tuple.Tuple != want {
		t.Errorf("drop tuple %+v, want %+v", drop.Hop.Tuple.Tuple, want)
	}
	kinds := map[trace.Kind]bool{}
	for _, e := range got {
		if e.SKB == drop.SKB {
			kinds[e.Hop.Event] = true
		}
		if e.Hop.Tuple != nil {
			if _, ok := filter.Direction(e.Hop.Tuple.Tuple); !ok {
				t.Errorf("event outside the filter: %+v", e.Hop)
			}
		}
	}
	// On loopback the packet is queued, sent and received before the drop: those hooks' builds
	// saw it too.
	for _, k := range []trace.Kind{trace.KindQueue, trace.KindXmit, trace.KindReceive} {
		if !kinds[k] {
			t.Errorf("the dropped packet has no %s hop: %v", k, kinds)
		}
	}
	stop()
}

// Every program pathtrace loads is named as IsOwnProgram knows pathtrace's: the leftover checks
// (the tests', make bench's) rely on it, and a program named otherwise would escape them.
func TestProgramNamesAreOwn(t *testing.T) {
	spec, err := bpf.LoadPathtrace()
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Programs) == 0 {
		t.Fatal("no programs in the collection")
	}
	for name, p := range spec.Programs {
		// The kernel keeps the first 15 bytes of a name.
		if kept := p.Name[:min(len(p.Name), 15)]; !IsOwnProgram(kept) {
			t.Errorf("program %s is listed by the kernel as %q, which IsOwnProgram does not know", name, kept)
		}
	}
	for _, other := range []string{"bench_empty", "cil_from_container", "tail_handle_ipv4", "", "o"} {
		if IsOwnProgram(other) {
			t.Errorf("IsOwnProgram(%q) = true", other)
		}
	}
}
