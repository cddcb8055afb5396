package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDNSQuery(t *testing.T) {
	q := dnsQuery(0x1234, "a.bc")
	want := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 2, 'b', 'c', 0, 0, 1, 0, 1}
	if string(q) != string(want) {
		t.Errorf("dnsQuery = %v, want %v", q, want)
	}
}

func TestChecksum(t *testing.T) {
	// An echo request with id 0, seq 0 and no payload: 0x0800 folded and inverted.
	if got := checksum([]byte{8, 0, 0, 0, 0, 0, 0, 0}); got != 0xf7ff {
		t.Errorf("checksum = %#x, want 0xf7ff", got)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		p    Probe
		want string
	}{
		{Probe{Kind: "smoke", Dst: netip.MustParseAddr("10.0.0.1")}, "want one of icmp, tcp, udp, dns"},
		{Probe{Kind: "icmp"}, "needs a destination"},
		{Probe{Kind: "tcp", Dst: netip.MustParseAddr("10.0.0.1")}, "needs --dport"},
	} {
		if err := c.p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate = %v, want %q", c.p, err, c.want)
		}
	}
	p := Probe{Kind: "dns", Dst: netip.MustParseAddr("10.0.0.1")}
	if err := p.Validate(); err != nil || p.Dport != 53 || p.Count != 5 {
		t.Errorf("dns defaults: %+v, %v", p, err)
	}
}

// A UDP probe in this namespace reaches a listener on loopback with the marker.
func TestUDPOnLoopback(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	p := Probe{Kind: "udp", Dst: netip.MustParseAddr("127.0.0.1"), Dport: uint16(port), Count: 2, Interval: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != Marker {
		t.Errorf("read %q, %v; want %q", buf[:n], err, Marker)
	}
}

// An ICMP probe from another namespace: the socket is made there (root).
func TestICMPFromNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets and setns")
	}
	var sent []string
	p := Probe{Kind: "icmp", Netns: "/proc/self/ns/net", Dst: netip.MustParseAddr("127.0.0.1"), Count: 1,
		Sent: func(f string, a ...any) { sent = append(sent, f) }}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 {
		t.Errorf("sent %v", sent)
	}
	p.Netns = "/nonexistent"
	if err := p.Run(ctx); err == nil || !strings.Contains(err.Error(), "network namespace") {
		t.Errorf("missing netns: %v", err)
	}
}

// Ident is told each probe's source port before it leaves: the datagrams and the connections
// come from it.
func TestIdentIsTheSourcePort(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var idents []uint16
	p := Probe{Kind: "dns", Dst: netip.MustParseAddr("127.0.0.1"), Dport: uint16(pc.LocalAddr().(*net.UDPAddr).Port), Count: 2, Interval: time.Millisecond,
		Ident: func(id uint16) { idents = append(idents, id) }}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	for i := 0; i < 2; i++ {
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if len(idents) != 1 || uint16(from.(*net.UDPAddr).Port) != idents[0] {
			t.Errorf("datagram from port %d, Ident told %v: want the one socket's port", from.(*net.UDPAddr).Port, idents)
		}
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	idents = nil
	p = Probe{Kind: "tcp", Dst: netip.MustParseAddr("127.0.0.1"), Dport: uint16(ln.Addr().(*net.TCPAddr).Port), Count: 3, Interval: 20 * time.Millisecond,
		Ident: func(id uint16) { idents = append(idents, id) }}
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var from []uint16
	for i := 0; i < 3; i++ {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		from = append(from, uint16(c.RemoteAddr().(*net.TCPAddr).Port))
		c.Close()
	}
	if len(idents) != 3 || idents[0] != from[0] || idents[1] != from[1] || idents[2] != from[2] {
		t.Errorf("connections from ports %v, Ident told %v: want one port per probe, the same", from, idents)
	}
}

// An ICMP probe's echo id, from a ping socket (its id is the kernel's) or a raw one (ours).
func TestIdentICMP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a ping or raw socket")
	}
	var idents []uint16
	p := Probe{Kind: "icmp", Dst: netip.MustParseAddr("127.0.0.1"), Count: 1, Ident: func(id uint16) { idents = append(idents, id) }}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(idents) != 1 || idents[0] == 0 {
		t.Errorf("Ident told %v, want one echo id", idents)
	}
}
