package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/trace"
)

// The postmortem capture (--pcapng), read with Debian's tshark, not pathtrace's own reader: at
// every hop tshark's dissection of the bytes the kernel held is the hop's tuple, NAT rewrite
// and tunnel included; interfaces are named by place; the comments tell each hop's story and
// the section header the verdict. (The VM has no tshark: vmtest leaves these out.)

// capture starts pathtrace with --pcapng; the capture is at the returned path once it stops.
func capture(t *testing.T, args ...string) (*session, string) {
	t.Helper()
	testutil.RequireTshark(t)
	pcap := filepath.Join(t.TempDir(), "trace.pcapng")
	return start(t, append(args, "--pcapng", pcap)...), pcap
}

// recordCapture keeps a trace with its packets' bytes as testdata/postmortem/<name>.json when
// the test runs with -record: render/pcapng and render/svg test on them without a kernel.
func recordCapture(t *testing.T, name, path string) {
	t.Helper()
	if *recordMerge {
		copyFile(t, path, filepath.Join("..", "testdata", "postmortem", name+".json"))
	}
}

func interfaces(frames []testutil.Frame) []string {
	var out []string
	for _, f := range frames {
		if !slices.Contains(out, f.Interface) {
			out = append(out, f.Interface)
		}
	}
	slices.Sort(out)
	return out
}

// commentsWith are the frames whose comment contains s.
func commentsWith(frames []testutil.Frame, s string) []testutil.Frame {
	var out []testutil.Frame
	for _, f := range frames {
		if strings.Contains(f.Comment, s) {
			out = append(out, f)
		}
	}
	return out
}

// The "done when": `pathtrace demo --pcapng demo.pcapng --svg demo.svg` makes both, and
// tshark reads the capture with each hop's comment.
func TestCaptureDemo(t *testing.T) {
	testutil.RequireRoot(t, "build the demo's network namespaces")
	testutil.RequireTshark(t)
	dir := t.TempDir()
	js, pcap, svg := filepath.Join(dir, "demo.json"), filepath.Join(dir, "demo.pcapng"), filepath.Join(dir, "demo.svg")
	out, err := combinedOutput(t, exec.Command(binary, "demo", "--color", "never", "--json", js, "--pcapng", pcap, "--svg", svg))
	if err != nil {
		t.Fatalf("pathtrace demo: %v\n%s", err, out)
	}
	tr, err := jsontrace.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	frames := testutil.CheckCapture(t, tr, pcap)
	if n := len(commentsWith(frames, "on pathtrace-demo-node veth-pod; route table main -> veth-ext; fate: DROPPED IP_INADDRERRORS at ip_error+0x")); n != 3 {
		t.Errorf("%d frames tell the drop, want the 3 pings'", n)
	}
	picture, err := os.ReadFile(svg)
	if err != nil || !strings.Contains(string(picture), `id="drop"`) || !strings.Contains(string(picture), "pathtrace-demo-node") {
		t.Errorf("demo.svg (%v) does not draw the drop on the node:\n%s", err, picture)
	}
	requireNothingLeft(t)
}

func TestCaptureForwardingDisabled(t *testing.T) {
	topo := standard(t, "capfwd", 51)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	s, pcap := capture(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node with forwarding off", got)
	}
	tr := s.stop(syscall.SIGINT)
	recordCapture(t, "forward-drop", s.json)
	frames := testutil.CheckCapture(t, tr, pcap)
	want := []string{topo.Node.Name() + " " + topo.NodePodIf, topo.Pod.Name() + " eth0"}
	if got := interfaces(frames); !slices.Equal(got, want) {
		t.Errorf("interfaces %q, want %q", got, want)
	}
	drops := commentsWith(frames, "fate: DROPPED IP_INADDRERRORS at ip_error+0x")
	if reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8); len(drops) != len(reqs) || len(reqs) != 2 {
		t.Errorf("%d frames tell the drop, of %d echo requests (want 2)", len(drops), len(reqs))
	}
	for _, f := range drops {
		if f.Interface != topo.Node.Name()+" "+topo.NodePodIf {
			t.Errorf("the drop is told on %q", f.Interface)
		}
	}
	info := testutil.TsharkInfo(t, pcap)
	if !strings.Contains(info, "pathtrace verdict: DROPPED: forwarding disabled (net.ipv4.ip_forward=0)") {
		t.Errorf("the section header does not carry the verdict:\n%s", info)
	}
	// One packet's journey is one display filter away.
	p := testutil.ICMPOfType(packets(tr, trace.Request), 8)[0]
	withBytes := 0
	for _, h := range p.Hops {
		if len(h.Bytes) > 0 {
			withBytes++
		}
	}
	out, err := exec.Command("tshark", "-r", pcap, "-Y", `frame.comment contains "pkt=`+strconv.Itoa(p.ID)+` "`).Output()
	if n := strings.Count(string(out), "\n"); err != nil || n != withBytes {
		t.Errorf("filter on packet #%d: %d frames (%v), want its %d hops:\n%s", p.ID, n, err, withBytes, out)
	}
	t.Logf("tshark -Y 'frame.comment contains \"pkt=%d \"':\n%s", p.ID, out)
}

func TestCaptureDNAT(t *testing.T) {
	topo := standard(t, "capnat", 52)
	const vip = "10.96.0.10"
	if err := topo.Node.NftDNAT(vip, topo.ExtIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.AddRoute(vip+"/32", topo.NodePodIP.String()); err != nil {
		t.Fatal(err)
	}
	s, pcap := capture(t, "--src", topo.PodIP.String(), "--dst", vip, "--proto", "icmp")
	if n, err := topo.Pod.Ping(vip, 0x4245, 2, 100*time.Millisecond, 500*time.Millisecond); err != nil || n != 2 {
		t.Fatalf("ping %s: %d replies, %v", vip, n, err)
	}
	tr := s.stop(syscall.SIGINT)
	recordCapture(t, "dnat", s.json)
	frames := testutil.CheckCapture(t, tr, pcap)
	// The rewrite is told where it is seen, and tshark reads the new address there: before it
	// the packet goes to the VIP, from it on to ext.
	for _, c := range []struct{ nat, src, dst string }{
		{"NAT dst " + vip + " -> " + topo.ExtIP.String(), topo.PodIP.String(), topo.ExtIP.String()},
		{"NAT src " + topo.ExtIP.String() + " -> " + vip, vip, topo.PodIP.String()},
	} {
		got := commentsWith(frames, c.nat)
		if len(got) != 2 {
			t.Errorf("%d frames say %q, want one per packet (2)", len(got), c.nat)
		}
		for _, f := range got {
			if f.IPSrc[0] != c.src || f.IPDst[0] != c.dst {
				t.Errorf("frame saying %q: tshark reads %s > %s", c.nat, f.IPSrc[0], f.IPDst[0])
			}
		}
	}
	toVIP := 0
	for _, f := range frames {
		if f.IPDst[0] == vip {
			toVIP++
		}
	}
	if toVIP == 0 {
		t.Errorf("no frame before the rewrite: tshark never read the VIP %s as destination", vip)
	}
}

func TestCaptureVXLAN(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	o, err := lab.NewOverlay("pte2e-capvx", 53)
	if err != nil {
		t.Fatalf("build overlay: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	s, pcap := capture(t, "--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "icmp")
	if n, err := o.Pod1.Ping(o.Pod2IP.String(), 0x4246, 2, 100*time.Millisecond, 500*time.Millisecond); err != nil || n != 2 {
		t.Fatalf("ping across the overlay: %d replies, %v", n, err)
	}
	tr := s.stop(syscall.SIGINT)
	recordCapture(t, "vxlan", s.json)
	// flannel's port is not VXLAN's IANA port: tshark is told, as a user would tell Wireshark.
	frames := testutil.CheckCapture(t, tr, pcap, "-d", "udp.port==8472,vxlan")
	wire := 0
	for _, f := range frames {
		if len(f.VNI) == 1 && len(f.IPSrc) == 2 {
			wire++
			if f.IPSrc[0] != o.Node1Underlay.String() && f.IPSrc[0] != o.Node2Underlay.String() {
				t.Errorf("a VXLAN frame from %s", f.IPSrc[0])
			}
			if !strings.Contains(f.Comment, "in vxlan") {
				t.Errorf("a VXLAN frame's comment does not say so: %q", f.Comment)
			}
		}
	}
	// Each request and each reply crosses the underlay: queued and sent on one node, received on
	// the other.
	if wire < 2*2*3 {
		t.Errorf("%d frames carry a VXLAN inner packet, want at least 12", wire)
	}
}

// TestCaptureMerged: the capture of a merged trace (pathtrace merge --pcapng) names each
// interface with its node and tells each packet's journey across both, in order.
func TestCaptureMerged(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	testutil.RequireTshark(t)
	o, err := lab.NewOverlay("pte2e-capmg", 54)
	if err != nil {
		t.Fatalf("build overlay: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	filter := []string{"--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "icmp"}
	scope := func(ns ...string) []string {
		return append(slices.Clone(filter), "--netns-scope", strings.Join(ns, ","), "--pcapng", filepath.Join(t.TempDir(), "node.pcapng"))
	}
	sa := start(t, scope(o.Pod1.Name(), o.Node1.Name())...)
	sb := start(t, scope(o.Node2.Name(), o.Pod2.Name())...)
	if n, err := o.Pod1.Ping(o.Pod2IP.String(), 0x4247, 2, 100*time.Millisecond, 500*time.Millisecond); err != nil || n != 2 {
		t.Fatalf("ping across the overlay: %d replies, %v", n, err)
	}
	time.Sleep(300 * time.Millisecond)
	sb.cmd.Process.Signal(syscall.SIGINT)
	sa.stop(syscall.SIGINT)
	sb.stop(0)
	dir := t.TempDir()
	n1, n2 := filepath.Join(dir, "node1.json"), filepath.Join(dir, "node2.json")
	copyFile(t, sa.json, n1)
	copyFile(t, sb.json, n2)
	merged, pcap, svg := filepath.Join(dir, "merged.json"), filepath.Join(dir, "merged.pcapng"), filepath.Join(dir, "merged.svg")
	if out, err := combinedOutput(t, exec.Command(binary, "merge", n1, n2, "--json", merged, "--pcapng", pcap, "--svg", svg, "--color", "never")); err != nil {
		t.Fatalf("pathtrace merge: %v\n%s", err, out)
	}
	tr, err := jsontrace.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	recordCapture(t, "merged", merged)
	if picture, err := os.ReadFile(svg); err != nil || !strings.Contains(string(picture), "node: node2") {
		t.Errorf("merged.svg (%v) has no frame for node2", err)
	}
	frames := testutil.CheckCapture(t, tr, pcap, "-d", "udp.port==8472,vxlan")
	for _, name := range interfaces(frames) {
		if !strings.HasPrefix(name, "node1: ") && !strings.HasPrefix(name, "node2: ") {
			t.Errorf("interface %q does not name its node", name)
		}
	}
	for _, want := range []string{"node1: " + o.Pod1.Name() + " eth0", "node1: " + o.Node1.Name() + " " + o.UnderlayIf,
		"node2: " + o.Node2.Name() + " " + o.UnderlayIf, "node2: " + o.Pod2.Name() + " eth0"} {
		if !slices.Contains(interfaces(frames), want) {
			t.Errorf("no interface %q in %q", want, interfaces(frames))
		}
	}
	// A request's frames go from node1 to node2 (CheckCapture: in the order of its hops).
	joined := 0
	for _, p := range testutil.ICMPOfType(tr.Packets, 8) {
		got := commentsWith(frames, "pkt="+strconv.Itoa(p.ID)+" ")
		if len(got) > 0 && strings.HasPrefix(got[0].Interface, "node1: ") && strings.HasPrefix(got[len(got)-1].Interface, "node2: ") {
			joined++
		}
	}
	if joined == 0 {
		t.Errorf("no request's frames go from node1 to node2")
	}
}
