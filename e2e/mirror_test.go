package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// A tc mirred-style mirror on the node's pod veth clones each packet the pod sends to a
// monitoring port (mon0, whose peer is in the mon namespace). The clone is a new sk_buff
// that travels on: it names the packet it copies, is sent out of mon0 and received in mon,
// while the original is forwarded to ext as if nothing happened.
func TestTCMirrorClone(t *testing.T) {
	topo := standard(t, "mirror", 33)
	mon, err := topo.Lab.AddNS("mon")
	if err != nil {
		t.Fatal(err)
	}
	const monIf = "mon0"
	if err := topo.Lab.Veth(topo.Node, monIf, "", mon, "eth0", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := topo.Node.AttachTCMirror(topo.NodePodIf, monIf); err != nil {
		t.Fatal(err)
	}

	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	n, err := topo.Pod.Ping(topo.ExtIP.String(), 0x4246, 2, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("ping through the mirrored veth: %d replies, %v", n, err)
	}
	tr := s.stop(syscall.SIGINT)

	reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8)
	ids := map[int]trace.Packet{}
	for _, p := range reqs {
		ids[p.ID] = p
	}
	node, ext := topo.Node.Name(), topo.Ext.Name()
	any := func(trace.Hop) bool { return true }
	kind := func(k trace.Kind) func(trace.Hop) bool { return func(h trace.Hop) bool { return h.Event == k } }
	originals, clones := 0, map[int]int{} // original ID -> its clones
	for _, p := range reqs {
		if p.CopyOf == 0 {
			originals++
			if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != ext {
				t.Errorf("request #%d fate %+v, want delivered in %s", p.ID, p.Fate, ext)
			}
			if hasHop(p, node, monIf, any) {
				t.Errorf("request #%d, the original, has a hop on %s: the clone's hops went to it", p.ID, monIf)
			}
			if !routedIn(p, node) {
				t.Errorf("request #%d, the original, lost its forwarding lookup in %s", p.ID, node)
			}
			continue
		}
		orig, ok := ids[p.CopyOf]
		if !ok || orig.CopyOf != 0 || orig.Tuple.ICMPSeq != p.Tuple.ICMPSeq {
			t.Errorf("clone #%d names #%d, which is not its original", p.ID, p.CopyOf)
			continue
		}
		clones[p.CopyOf]++
		if !hasHop(p, node, monIf, kind(trace.KindQueue)) && !hasHop(p, node, monIf, kind(trace.KindXmit)) {
			t.Errorf("clone #%d never queued or sent on %s/%s", p.ID, node, monIf)
		}
		if !hasHop(p, mon.Name(), "eth0", kind(trace.KindReceive)) {
			t.Errorf("clone #%d never received on %s/eth0", p.ID, mon.Name())
		}
		if p.Fate.NetnsName != mon.Name() {
			t.Errorf("clone #%d fate %+v, want it to end in %s", p.ID, p.Fate, mon.Name())
		}
		if hasHop(p, ext, topo.NodeExtIf, any) || hasHop(p, ext, "eth0", any) {
			t.Errorf("clone #%d reached %s: it was the original", p.ID, ext)
		}
		if routedIn(p, node) || hasHop(p, node, topo.NodeExtIf, any) {
			t.Errorf("clone #%d took its original's route lookup or hops in %s", p.ID, node)
		}
	}
	if originals != 2 {
		t.Errorf("%d original echo requests traced, want 2", originals)
	}
	for _, p := range reqs {
		if p.CopyOf == 0 && clones[p.ID] != 1 {
			t.Errorf("request #%d has %d clones, want 1", p.ID, clones[p.ID])
		}
	}
	out := s.stdout.String()
	requireLine(t, out, "(copy of #")
	requireLine(t, out, node, monIf)
}

// routedIn says whether p has a route lookup in netns.
func routedIn(p trace.Packet, netns string) bool {
	for _, h := range p.Hops {
		if h.Route != nil && h.NetnsName == netns {
			return true
		}
	}
	return false
}
