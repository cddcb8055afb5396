package e2e

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// Incident 001's shape: pod-to-pod across a flannel-like VXLAN (port 8472). Traced by the inner
// (pod) tuple, the path shows both nodes, the vxlan device and the outer tuple on the wire.
func TestVXLANOverlay(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	o, err := lab.NewOverlay("pte2e-vxl", 31)
	if err != nil {
		t.Fatalf("build overlay: %v", err)
	}
	t.Cleanup(func() { o.Close() })

	s := start(t, "--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "icmp")
	n, err := o.Pod1.Ping(o.Pod2IP.String(), 0x4244, 2, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("ping across the overlay: %d replies, %v", n, err)
	}
	tr := s.stop(syscall.SIGINT)

	reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8)
	if len(reqs) != 2 {
		t.Fatalf("%d echo requests traced, want 2", len(reqs))
	}
	n1, n2 := o.Node1.Name(), o.Node2.Name()
	for _, p := range reqs {
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != o.Pod2.Name() {
			t.Errorf("request #%d fate %+v, want delivered in %s", p.ID, p.Fate, o.Pod2.Name())
		}
		crossed := netnsSeen(p)
		for _, ns := range []string{o.Pod1.Name(), n1, n2, o.Pod2.Name()} {
			if !contains(crossed, ns) {
				t.Errorf("request #%d crossed %v, missing %s", p.ID, crossed, ns)
			}
		}
		// On node1's underlay it travels as VXLAN from node1 to node2 on port 8472, carrying the
		// pod tuple.
		var onWire bool
		for _, h := range p.Hops {
			if h.NetnsName == n1 && h.Ifname == o.UnderlayIf && h.Encap == "vxlan" && h.Outer != nil {
				onWire = h.Outer.Src == o.Node1Underlay && h.Outer.Dst == o.Node2Underlay &&
					h.Outer.Dport == o.VXLANPort && h.Tuple.Src == o.Pod1IP && h.Tuple.Dst == o.Pod2IP &&
					h.VNI == o.VNI
			}
		}
		if !onWire {
			t.Errorf("request #%d: no vxlan hop on %s/%s with VNI %d and outer %s > %s:%d", p.ID, n1, o.UnderlayIf, o.VNI, o.Node1Underlay, o.Node2Underlay, o.VXLANPort)
		}
		if !hasHop(p, n1, o.VXLANDev, func(trace.Hop) bool { return true }) || !hasHop(p, n2, o.VXLANDev, func(trace.Hop) bool { return true }) {
			t.Errorf("request #%d does not pass %s on both nodes", p.ID, o.VXLANDev)
		}
	}
	requireLine(t, s.stdout.String(), n1, o.UnderlayIf, fmt.Sprintf("in vxlan vni %d %s", o.VNI, o.Node1Underlay))
}

// Geneve and IP-in-IP devices are missing on this kernel: the packets are crafted, and the
// filter on the inner tuple must still find them on the wire.
func TestInnerTupleMatchesGeneveAndIPIP(t *testing.T) {
	topo := standard(t, "encap", 24)
	inner := lab.InnerUDP{
		Src: netip.MustParseAddr("10.244.1.5"), Dst: netip.MustParseAddr("10.244.2.9"),
		Sport: 5353, Dport: 8080, Payload: []byte("inner"),
	}
	s := start(t, "--src", inner.Src.String(), "--dst", inner.Dst.String(), "--proto", "udp")
	if err := topo.Pod.SendGeneve(topo.ExtIP.String(), 7, inner); err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.SendVXLAN(topo.ExtIP.String(), 4789, 9, inner); err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.SendIPIP(topo.PodIP.String(), topo.ExtIP.String(), inner); err != nil {
		t.Fatal(err)
	}
	tr := s.stop(syscall.SIGINT)
	seen := map[string]bool{}
	for _, p := range tr.Packets {
		for _, h := range p.Hops {
			if h.Encap == "" || h.Tuple == nil || h.Outer == nil {
				continue
			}
			if h.Tuple.Src != inner.Src || h.Tuple.Dst != inner.Dst || h.Tuple.Dport != inner.Dport {
				t.Errorf("%s hop carries %v, want the crafted inner tuple", h.Encap, h.Tuple.Tuple)
			}
			if h.Outer.Src != topo.PodIP || h.Outer.Dst != topo.ExtIP {
				t.Errorf("%s hop outer %v, want %s > %s", h.Encap, h.Outer.Tuple, topo.PodIP, topo.ExtIP)
			}
			// The VNI each was sent with (IP-in-IP has none).
			if want := map[string]uint32{"geneve": 7, "vxlan": 9}[h.Encap]; h.VNI != want {
				t.Errorf("%s hop VNI %d, want %d", h.Encap, h.VNI, want)
			}
			seen[h.Encap] = true
		}
	}
	for _, kind := range []string{"geneve", "vxlan", "ipip"} {
		if !seen[kind] {
			t.Errorf("no %s hop matched by the inner tuple; saw %v", kind, seen)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A bridge that does not know the destination MAC floods the frame to every port: the clone on
// the third pod's port names the packet it copies, and dies there as not for that host.
func TestBridgeFloodClone(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	b, err := lab.NewBridged("pte2e-br", 32, 3)
	if err != nil {
		t.Fatalf("build bridge: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Flood(); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", b.PodIPs[0].String(), "--dst", b.PodIPs[1].String(), "--proto", "icmp")
	n, err := b.Pods[0].Ping(b.PodIPs[1].String(), 0x4245, 2, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("ping across the bridge: %d replies, %v", n, err)
	}
	tr := s.stop(syscall.SIGINT)

	ids := map[int]trace.Packet{}
	for _, p := range tr.Packets {
		ids[p.ID] = p
	}
	clones := 0
	for _, p := range testutil.ICMPOfType(packets(tr, trace.Request), 8) {
		if p.CopyOf == 0 {
			if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != b.Pods[1].Name() {
				t.Errorf("request #%d fate %+v, want delivered in %s", p.ID, p.Fate, b.Pods[1].Name())
			}
			continue
		}
		clones++
		orig, ok := ids[p.CopyOf]
		if !ok || orig.Tuple.ICMPSeq != p.Tuple.ICMPSeq {
			t.Errorf("clone #%d names #%d, which is not its original", p.ID, p.CopyOf)
		}
		if !hasHop(p, b.Node.Name(), b.PortIfs[2], func(trace.Hop) bool { return true }) {
			t.Errorf("clone #%d never queued on %s", p.ID, b.PortIfs[2])
		}
	}
	if clones < 2 {
		t.Errorf("%d flooded clones traced, want one per echo request", clones)
	}
	requireLine(t, s.stdout.String(), "(copy of #")
}
