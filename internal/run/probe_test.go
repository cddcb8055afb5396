package run

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/probe"
	"github.com/pathtrace/pathtrace/trace"
)

// The sender's account is what meta.probe holds: what was to be sent before the run (for the
// header), and at the end how many left. UDP to a loopback socket needs no privilege.
func TestSenderAccount(t *testing.T) {
	ln, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.LocalAddr().(*net.UDPAddr).Port)
	var log bytes.Buffer
	s, err := newSender(probe.Probe{Kind: "udp", Dst: netip.MustParseAddr("127.0.0.1"), Dport: port, Count: 3, Interval: 5 * time.Millisecond}, &log)
	if err != nil {
		t.Fatal(err)
	}
	want := trace.SentProbe{Kind: "udp", Dst: netip.MustParseAddr("127.0.0.1"), Dport: port, Count: 3}
	if got := s.planned(); *got != want {
		t.Errorf("planned %+v, want %+v", *got, want)
	}
	s.from([]trace.PodInfo{{Side: "src", Namespace: "default", Name: "web"}}) // no netns: not from the pod
	if got := s.planned(); got.Pod != "" {
		t.Errorf("from pathtrace's own namespace, the probe names pod %q", got.Pod)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.start(ctx)
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		_ = ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := ln.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !strings.HasPrefix(string(buf[:n]), probe.Marker) {
			t.Errorf("datagram %d is %q, want the probe marker", i, buf[:n])
		}
	}
	cancel()
	want.Sent = 3
	if got := s.result(); *got != want {
		t.Errorf("result %+v, want %+v", *got, want)
	}
	if n := strings.Count(log.String(), "probe: sent udp datagram to 127.0.0.1 port "); n != 3 {
		t.Errorf("log says %d sent, want 3:\n%s", n, log.String())
	}
}

// A probe that cannot be sent says why in the account; a bad one is refused before the run.
func TestSenderError(t *testing.T) {
	// Broadcast without SO_BROADCAST: the kernel refuses the first datagram (EACCES).
	s, err := newSender(probe.Probe{Kind: "udp", Dst: netip.MustParseAddr("255.255.255.255"), Dport: 9, Count: 2, Interval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.start(ctx)
	cancel()
	got := s.result()
	if got.Sent != 0 || !strings.Contains(got.Error, "permission denied") {
		t.Errorf("result %+v, want none sent and the kernel's refusal", *got)
	}
	if _, err := newSender(probe.Probe{Kind: "tcp", Dst: netip.MustParseAddr("10.0.0.1")}, nil); err == nil || !strings.Contains(err.Error(), "--dport") {
		t.Errorf("a tcp probe without a port: %v, want it refused for want of --dport", err)
	}
}

// The packets of the probes' sockets, and their replies, are marked; nothing else is.
func TestSenderMarks(t *testing.T) {
	dst := netip.MustParseAddr("10.96.0.10")
	other := netip.MustParseAddr("10.0.0.1")
	pod := netip.MustParseAddr("10.244.1.5")
	pkt := func(flow trace.Direction, proto trace.Proto, src, dst netip.Addr, sport, dport uint16, icmpType uint8, icmpID uint16) *trace.Packet {
		return &trace.Packet{Flow: flow, Tuple: trace.Headers{Tuple: trace.Tuple{Proto: proto, Src: src, Dst: dst, Sport: sport, Dport: dport}, ICMPType: icmpType, ICMPID: icmpID}}
	}
	for _, c := range []struct {
		kind string
		p    *trace.Packet
		want bool
	}{
		{"dns", pkt(trace.Request, trace.ProtoUDP, pod, dst, 40001, 53, 0, 0), true},
		{"dns", pkt(trace.Reply, trace.ProtoUDP, netip.MustParseAddr("10.244.2.2"), pod, 53, 40001, 0, 0), true}, // from the backend, before un-NAT
		{"dns", pkt(trace.Request, trace.ProtoUDP, pod, dst, 40002, 53, 0, 0), false},                            // another socket
		{"dns", pkt(trace.Request, trace.ProtoUDP, pod, other, 40001, 53, 0, 0), false},                          // elsewhere
		{"dns", pkt(trace.Request, trace.ProtoTCP, pod, dst, 40001, 53, 0, 0), false},
		{"tcp", pkt(trace.Request, trace.ProtoTCP, pod, dst, 40001, 80, 0, 0), true},
		{"icmp", pkt(trace.Request, trace.ProtoICMP, pod, dst, 0, 0, 8, 40001), true},
		{"icmp", pkt(trace.Reply, trace.ProtoICMP, dst, pod, 0, 0, 0, 40001), true},
		{"icmp", pkt(trace.Reply, trace.ProtoICMP, dst, pod, 0, 0, 3, 40001), false}, // not an echo
		{"icmp", pkt(trace.Request, trace.ProtoICMP, pod, dst, 0, 0, 8, 999), false},
		{"icmp", pkt(trace.Request, trace.ProtoUDP, pod, dst, 40001, 53, 0, 0), false},
	} {
		s, err := newSender(probe.Probe{Kind: c.kind, Dst: dst, Dport: 80}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.idents = map[uint16]bool{40001: true}
		s.meta.Netns = "/var/run/netns/cni-1"
		s.from([]trace.PodInfo{{Side: "dst", Namespace: "default", Name: "db"}, {Side: "src", Namespace: "default", Name: "web"}})
		if s.meta.Pod != "default/web" {
			t.Errorf("probe from the src pod's namespace names pod %q", s.meta.Pod)
		}
		s.Mark(c.p)
		if c.p.FromProbe != c.want {
			t.Errorf("%s probe: %s %+v marked %v, want %v", c.kind, c.p.Flow, c.p.Tuple, c.p.FromProbe, c.want)
		}
	}
}
