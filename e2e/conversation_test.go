package e2e

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// Incident 000: the pod's request leaves the node MASQUERADEd; the reply comes back to the
// node's address on the uplink, whose forwarding is off, and dies there after de-NAT.
func TestMasqueradeReplyDropped(t *testing.T) {
	topo := standard(t, "masq", 21)
	if err := topo.Node.NftMasquerade(topo.NodeExtIf); err != nil {
		t.Fatal(err)
	}
	// ip_forward stays 1 (it set every device's forwarding); only the uplink is turned off.
	if err := topo.Node.Sysctl("net.ipv4.conf."+topo.NodeExtIf+".forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies, want none", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	node := topo.Node.Name()

	reqs, reps := testutil.ICMPOfType(packets(tr, trace.Request), 8), testutil.ICMPOfType(packets(tr, trace.Reply), 0)
	if len(reqs) != 2 || len(reps) != 2 {
		t.Fatalf("got %d echo requests and %d echo replies, want 2 and 2", len(reqs), len(reps))
	}
	for _, p := range reqs {
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != topo.Ext.Name() {
			t.Errorf("request #%d fate %+v, want delivered in ext", p.ID, p.Fate)
		}
		// It left the node with the node's address: the SNAT is on the uplink hop.
		if !hasHop(p, node, topo.NodeExtIf, func(h trace.Hop) bool { return h.Tuple.Src == topo.NodeExtIP }) {
			t.Errorf("request #%d never left %s with source %s", p.ID, topo.NodeExtIf, topo.NodeExtIP)
		}
	}
	for _, p := range reps {
		f := p.Fate
		if f.Outcome != trace.Dropped || !reasonIs(f.Reason, "IP_INADDRERRORS") || !strings.HasPrefix(f.Location, "ip_error+") ||
			f.NetnsName != node || f.Ifname != topo.NodeExtIf {
			t.Errorf("reply #%d fate %+v, want dropped IP_INADDRERRORS at ip_error on %s/%s", p.ID, f, node, topo.NodeExtIf)
		}
		// On the wire it was addressed to the node; de-NATed back to the pod before it died.
		if !hasHop(p, node, topo.NodeExtIf, func(h trace.Hop) bool { return h.Tuple.Dst == topo.NodeExtIP }) ||
			!hasHop(p, node, topo.NodeExtIf, func(h trace.Hop) bool { return h.Tuple.Dst == topo.PodIP }) {
			t.Errorf("reply #%d does not show both the on-wire (%s) and the translated (%s) destination", p.ID, topo.NodeExtIP, topo.PodIP)
		}
	}
	if len(tr.Flows) != 1 {
		t.Errorf("%d flows, want the request and its NATed reply in one", len(tr.Flows))
	} else if d := tr.Flows[0].Drops; len(d) != 1 || d[0].Flow != trace.Reply {
		t.Errorf("flow drops %+v, want the reply's", d)
	}
	if !strings.Contains(tr.Verdict.Summary, "the reply was dropped") {
		t.Errorf("verdict does not say the reply died: %q", tr.Verdict.Summary)
	}
	devKey := "net.ipv4.conf." + topo.NodeExtIf + ".forwarding"
	requireVerdict(t, tr, out, "forwarding disabled on "+topo.NodeExtIf+" ("+devKey+"=0)",
		evidence{devKey, "0"}, "sysctl -w "+devKey+"=1")
	requireLine(t, out, "NAT src "+topo.PodIP.String()+" -> "+topo.NodeExtIP.String())
	requireLine(t, out, "NAT dst "+topo.NodeExtIP.String()+" -> "+topo.PodIP.String())
	requireLine(t, out, "=> DROPPED on "+node+" "+topo.NodeExtIf+":", "ip_error+")
}

// A Service-like virtual IP: the user names the VIP; the node DNATs it to ext.
func TestDNATService(t *testing.T) {
	topo := standard(t, "dnat", 22)
	const vip = "10.96.0.10"
	if err := topo.Node.NftDNAT(vip, topo.ExtIP.String()); err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.AddRoute(vip+"/32", topo.NodePodIP.String()); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", vip, "--proto", "icmp")
	n, err := topo.Pod.Ping(vip, 0x4243, 2, 100*time.Millisecond, 500*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("ping %s: %d replies, %v", vip, n, err)
	}
	tr := s.stop(syscall.SIGINT)
	reqs, reps := testutil.ICMPOfType(packets(tr, trace.Request), 8), testutil.ICMPOfType(packets(tr, trace.Reply), 0)
	if len(reqs) != 2 || len(reps) != 2 {
		t.Fatalf("got %d echo requests and %d echo replies, want 2 and 2", len(reqs), len(reps))
	}
	for _, p := range reqs {
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != topo.Ext.Name() {
			t.Errorf("request #%d fate %+v, want delivered in ext", p.ID, p.Fate)
		}
	}
	for _, p := range reps {
		if p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != topo.Pod.Name() {
			t.Errorf("reply #%d fate %+v, want delivered in pod", p.ID, p.Fate)
		}
	}
	out := s.stdout.String()
	requireLine(t, out, "NAT dst "+vip+" -> "+topo.ExtIP.String())
	requireLine(t, out, "NAT src "+topo.ExtIP.String()+" -> "+vip)
	if tr.Verdict.Outcome != "delivered" || len(tr.Flows) != 1 {
		t.Errorf("verdict %q with %d flows, want delivered in one flow", tr.Verdict.Outcome, len(tr.Flows))
	}
}

// A TCP connection: SYN, SYN-ACK, data and FIN of both sides in one flow.
func TestTCPConversation(t *testing.T) {
	topo := standard(t, "tcp", 23)
	ln, err := topo.Ext.ListenTCP(topo.ExtIP.String() + ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "tcp", "--dport", "8080")
	c, err := topo.Pod.DialTCP(topo.ExtIP.String()+":8080", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hello pathtrace")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 15)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo: %v", err)
	}
	c.Close()
	time.Sleep(200 * time.Millisecond)
	tr := s.stop(syscall.SIGINT)

	if len(tr.Flows) != 1 {
		t.Fatalf("%d flows, want one TCP connection: %+v", len(tr.Flows), tr.Flows)
	}
	seen := map[trace.Direction]map[string]bool{trace.Request: {}, trace.Reply: {}}
	for _, p := range tr.Packets {
		seen[p.Flow][p.Tuple.TCPFlags.String()] = true
		// A FIN arriving at a socket the client already closed is purged with it: teardown.
		if p.Fate.Outcome == trace.Dropped && p.Fate.Reason != "QUEUE_PURGE" && !strings.HasPrefix(p.Fate.Location, "sk_stream_kill_queues+") {
			t.Errorf("packet #%d dropped: %+v", p.ID, p.Fate)
		}
	}
	for dir, flags := range map[trace.Direction][]string{trace.Request: {"SYN", "ACK"}, trace.Reply: {"SYN,ACK"}} {
		for _, f := range flags {
			if !seen[dir][f] {
				t.Errorf("no %s packet with flags %s; seen %v", dir, f, seen[dir])
			}
		}
	}
	fin := func(dir trace.Direction) bool {
		for f := range seen[dir] {
			if strings.Contains(f, "FIN") {
				return true
			}
		}
		return false
	}
	if !fin(trace.Request) || !fin(trace.Reply) {
		t.Errorf("FIN not seen both ways: %v", seen)
	}
	requireLine(t, s.stdout.String(), "request", "tcp", "SYN")
	if tr.Verdict.Outcome != "delivered" {
		t.Errorf("verdict %+v, want delivered", tr.Verdict)
	}
}

func hasHop(p trace.Packet, netns, ifname string, ok func(trace.Hop) bool) bool {
	for _, h := range p.Hops {
		if h.NetnsName == netns && h.Ifname == ifname && h.Tuple != nil && ok(h) {
			return true
		}
	}
	return false
}

// A SYN dropped by a FORWARD rule that is then removed: the kernel retransmits it and the
// trace ties the retransmission to the first SYN.
func TestTCPRetransmission(t *testing.T) {
	topo := standard(t, "rtx", 25)
	ln, err := topo.Ext.ListenTCP(topo.ExtIP.String() + ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "tcp", "--dport", "8080")
	// The first SYN dies in FORWARD; the rule goes before the kernel's retransmission (1s).
	time.AfterFunc(500*time.Millisecond, func() { topo.Node.NftDeleteFilter() })
	c, err := topo.Pod.DialTCP(topo.ExtIP.String()+":8080", 5*time.Second)
	if err != nil {
		t.Fatalf("dial after the rule was removed: %v", err)
	}
	c.Close()
	time.Sleep(200 * time.Millisecond)
	tr := s.stop(syscall.SIGINT)

	var first, again *trace.Packet
	for i := range tr.Packets {
		p := &tr.Packets[i]
		if p.Flow != trace.Request || p.Tuple.TCPFlags.String() != "SYN" {
			continue
		}
		if p.RetransmitOf == 0 && first == nil {
			first = p
		} else if p.RetransmitOf != 0 && again == nil {
			again = p
		}
	}
	if first == nil || again == nil {
		t.Fatalf("want a first SYN and a retransmitted one; packets: %d", len(tr.Packets))
	}
	if first.Fate.Outcome != trace.Dropped || !reasonIs(first.Fate.Reason, "NETFILTER_DROP") {
		t.Errorf("first SYN #%d fate %+v, want dropped by netfilter", first.ID, first.Fate)
	}
	if again.RetransmitOf != first.ID || again.Fate.Outcome != trace.Delivered {
		t.Errorf("retransmitted SYN #%d: retransmit_of=%d fate %+v, want of #%d and delivered", again.ID, again.RetransmitOf, again.Fate, first.ID)
	}
	if len(tr.Flows) != 1 || tr.Flows[0].Retransmissions < 1 {
		t.Errorf("flows %+v, want one with a retransmission", tr.Flows)
	}
	requireLine(t, s.stdout.String(), fmt.Sprintf("(retransmission of #%d)", first.ID))
}
