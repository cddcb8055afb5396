package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// Incident 004: a policy program on the pod's host-side veth drops the traffic. The verdict
// names the program and the direction.
func TestTCProgramDrop(t *testing.T) {
	for _, c := range []struct {
		dir, prog string
	}{{lab.TCIngress, lab.TCProgFromContainer}, {lab.TCEgress, lab.TCProgToContainer}} {
		t.Run(c.dir, func(t *testing.T) {
			topo := standard(t, "tc"+c.dir[:2], 41)
			// Ingress of the host-side veth sees what the pod sends; egress what is sent to it.
			deny := topo.PodIP
			if c.dir == lab.TCEgress {
				deny = topo.ExtIP
			}
			detach, err := topo.Node.AttachTCDrop(topo.NodePodIf, c.dir, deny)
			if err != nil {
				t.Fatal(err)
			}
			defer detach.Close()
			s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
			if got := ping(t, topo, 2); got != 0 {
				t.Fatalf("ping got %d replies through a dropping tc program", got)
			}
			tr := s.stop(syscall.SIGINT)
			out := s.stdout.String()
			reason := "TC_INGRESS"
			dir := trace.Request
			if c.dir == lab.TCEgress {
				reason, dir = "TC_EGRESS", trace.Reply
			}
			var died []trace.Packet
			for _, p := range testutil.ICMPOfType(packets(tr, dir), map[trace.Direction]uint8{trace.Request: 8, trace.Reply: 0}[dir]) {
				died = append(died, p)
				if f := p.Fate; f.Outcome != trace.Dropped || !reasonIs(f.Reason, reason) || f.Ifname != topo.NodePodIf {
					t.Errorf("%s #%d fate %+v, want dropped %s on %s", dir, p.ID, f, reason, topo.NodePodIf)
				}
			}
			if len(died) != 2 {
				t.Errorf("%d %s packets dropped, want 2", len(died), dir)
			}
			v := tr.Verdict
			wantCause := fmt.Sprintf("tc %s program %s on %s", c.dir, c.prog, topo.NodePodIf)
			// Without drop reasons (before 5.17) the tc hook is inferred from where the kernel
			// dropped it and what is attached there: a guess, and the verdict says so.
			wantConfidence := "high"
			if !hasDropReasons() {
				wantConfidence = "medium"
			}
			if v.Cause != wantCause || v.Confidence != wantConfidence {
				t.Errorf("verdict %q (%s), want %q", v.Cause, v.Confidence, wantCause)
			}
			if !strings.Contains(strings.Join(v.Fix, "\n"), "cilium monitor --type drop") {
				t.Errorf("fix %q does not point at Cilium's drop monitor", v.Fix)
			}
			requireLine(t, out, "tc "+c.dir+" program on "+topo.NodePodIf, c.prog, "id ")
			requireLine(t, out, "Cilium's policy enforcement")
		})
	}
}

// farEnd is a tun uplink on the node whose other side swallows every packet: traffic really
// leaves the traced host and nothing comes back.
type farEnd struct {
	mu   sync.Mutex
	srcs []netip.Addr
}

func (f *farEnd) packet(b []byte) {
	if len(b) >= 20 && b[0]>>4 == 4 {
		f.mu.Lock()
		f.srcs = append(f.srcs, netip.AddrFrom4([4]byte(b[12:16])))
		f.mu.Unlock()
	}
}

func withUplink(t *testing.T, name string, net uint8, masquerade bool) (*lab.Topology, netip.Addr, *farEnd) {
	t.Helper()
	topo := standard(t, name, net)
	far := &farEnd{}
	remote := netip.MustParseAddr(fmt.Sprintf("10.%d.99.5", net))
	up, err := topo.Node.TunUplink("uplink0", fmt.Sprintf("10.%d.9.1/30", net), fmt.Sprintf("10.%d.99.0/24", net), far.packet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if masquerade {
		if err := topo.Node.NftMasquerade("uplink0"); err != nil {
			t.Fatal(err)
		}
	}
	return topo, remote, far
}

// Incident 002: not dropped on this node; the request left with the node's address and the
// far side never answered.
func TestLeftHostNoReply(t *testing.T) {
	topo, remote, far := withUplink(t, "far", 42, true)
	s := start(t, "--src", topo.PodIP.String(), "--dst", remote.String(), "--proto", "icmp")
	if n, _ := topo.Pod.Ping(remote.String(), 0x4246, 2, 100e6, 300e6); n != 0 {
		t.Fatalf("%d replies from a far end that never answers", n)
	}
	tr := s.stop(syscall.SIGINT)
	reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8)
	if len(reqs) != 2 {
		t.Fatalf("%d requests traced, want 2", len(reqs))
	}
	for _, p := range reqs {
		if p.Fate.Outcome != trace.LeftHost || p.Fate.Ifname != "uplink0" {
			t.Errorf("request #%d fate %+v, want left-host on uplink0", p.ID, p.Fate)
		}
	}
	nodeAddr := fmt.Sprintf("10.%d.9.1", 42)
	v := tr.Verdict
	if v.Outcome != "left-host" || v.Cause != "no reply" || !strings.Contains(v.Summary, "not dropped on this host") ||
		!strings.Contains(v.Summary, "with source "+nodeAddr) {
		t.Errorf("verdict %+v, want left-host/no reply naming uplink0 and source %s", v, nodeAddr)
	}
	far.mu.Lock()
	defer far.mu.Unlock()
	if len(far.srcs) == 0 || far.srcs[0].String() != nodeAddr {
		t.Errorf("the far end saw sources %v, want %s", far.srcs, nodeAddr)
	}
	requireLine(t, s.stdout.String(), "=> left host on uplink0")
	requireLine(t, s.stdout.String(), "source address on the wire", nodeAddr)
}

// Without MASQUERADE the pod's own address leaves the node and no reply can come back.
func TestMissingMasquerade(t *testing.T) {
	topo, remote, _ := withUplink(t, "nomasq", 43, false)
	s := start(t, "--src", topo.PodIP.String(), "--dst", remote.String(), "--proto", "icmp")
	topo.Pod.Ping(remote.String(), 0x4247, 2, 100e6, 300e6)
	tr := s.stop(syscall.SIGINT)
	v := tr.Verdict
	if v.Outcome != "left-host" || v.Cause != "missing SNAT" || !strings.Contains(v.Summary, "its own source address "+topo.PodIP.String()) {
		t.Errorf("verdict %+v, want missing SNAT with the pod's address", v)
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), "MASQUERADE") {
		t.Errorf("fix %q does not point at MASQUERADE", v.Fix)
	}
	requireLine(t, s.stdout.String(), "cause", "missing SNAT")
}

// Incident 001: a VXLAN packet with a bad outer UDP checksum dies on the receiving node; traced
// by the inner pod tuple, the verdict names the checksum, the device and the offload fix.
func TestVXLANBadChecksum(t *testing.T) {
	testutil.RequireRoot(t, "create network namespaces and load BPF programs")
	o, err := lab.NewOverlay("pte2e-csum", 44)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	inner := lab.InnerUDP{Src: o.Pod1IP, Dst: o.Pod2IP, Sport: 43000, Dport: 80, Payload: []byte("SYN-ish"),
		SrcMAC: o.Node1VTEPMAC, DstMAC: o.Node2VTEPMAC}
	payload, err := lab.VXLANPayload(o.VNI, inner)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", o.Pod1IP.String(), "--dst", o.Pod2IP.String(), "--proto", "udp")
	for i := 0; i < 2; i++ {
		if err := o.Node1.SendUDPBadChecksum(o.Node1Underlay.String(), o.Node2Underlay.String(), 40000+uint16(i), o.VXLANPort, payload, 0xffff); err != nil {
			t.Fatal(err)
		}
	}
	tr := s.stop(syscall.SIGINT)
	reqs := packets(tr, trace.Request)
	if len(reqs) != 2 {
		t.Fatalf("%d packets traced, want the 2 VXLAN packets matched by their inner tuple", len(reqs))
	}
	for _, p := range reqs {
		f := p.Fate
		if f.Outcome != trace.Dropped || !reasonIs(f.Reason, "UDP_CSUM") || f.NetnsName != o.Node2.Name() || f.Ifname != o.UnderlayIf {
			t.Errorf("#%d fate %+v, want UDP_CSUM on %s/%s", p.ID, f, o.Node2.Name(), o.UnderlayIf)
		}
	}
	requireLine(t, s.stdout.String(), "DROPPED", "__udp4_lib_rcv", fmt.Sprintf("in vxlan vni %d %s", o.VNI, o.Node1Underlay))
	if !hasDropReasons() {
		// Before 5.17 __udp4_lib_rcv's drop has no reason: no socket and a bad checksum look
		// alike, and the verdict does not claim either.
		return
	}
	v := tr.Verdict
	if v.Cause != "bad outer UDP checksum on VXLAN" || v.Confidence != "high" {
		t.Errorf("verdict %q (%s)", v.Cause, v.Confidence)
	}
	if !strings.Contains(strings.Join(v.Fix, "\n"), "ethtool -K "+o.VXLANDev+" tx-checksum-ip-generic off") {
		t.Errorf("fix %q lacks the offload fix for %s", v.Fix, o.VXLANDev)
	}
	requireLine(t, s.stdout.String(), "checksum offload on "+o.UnderlayIf, "tx on")
}
