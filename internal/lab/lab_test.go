package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

func standard(t *testing.T, prefix string, net uint8) *Topology {
	t.Helper()
	needRoot(t)
	topo, err := Standard(prefix, net)
	if err != nil {
		t.Fatalf("Standard: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return topo
}

const (
	pingCount    = 3
	pingInterval = 50 * time.Millisecond
	pingTimeout  = time.Second
)

func ping(t *testing.T, from *NS, dst netip.Addr, id uint16) int {
	t.Helper()
	n, err := from.Ping(dst.String(), id, pingCount, pingInterval, pingTimeout)
	if err != nil {
		t.Fatalf("Ping %s: %v", dst, err)
	}
	return n
}

func netnsLink(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStandardPing(t *testing.T) {
	topo := standard(t, "ptlabping", 201)
	for _, dst := range []netip.Addr{topo.NodePodIP, topo.NodeExtIP, topo.ExtIP} {
		if got := ping(t, topo.Pod, dst, 0x1234); got != pingCount {
			t.Errorf("ping pod->%s: %d replies, want %d", dst, got, pingCount)
		}
	}
	if got := ping(t, topo.Ext, topo.PodIP, 0x4321); got != pingCount {
		t.Errorf("ping ext->pod: %d replies, want %d", got, pingCount)
	}
	if v, err := topo.Node.ReadSysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Errorf("node ip_forward = %q, %v; want 1", v, err)
	}
	for _, ns := range []*NS{topo.Pod, topo.Node, topo.Ext} {
		if v, err := ns.ReadSysctl("net.ipv4.conf.all.rp_filter"); err != nil || v != "0" {
			t.Errorf("%s rp_filter = %q, %v; want 0", ns.Name(), v, err)
		}
	}
}

func TestPingUnreachableAddressInsideLab(t *testing.T) {
	topo := standard(t, "ptlabnohost", 202)
	// 10.<net>.2.3 is on ext's subnet but nobody has it: the node's ARP
	// fails, so at most an ICMP host unreachable comes back, never a reply.
	dst := netip.AddrFrom4([4]byte{10, 202, 2, 3})
	n, err := topo.Pod.Ping(dst.String(), 7, 2, 50*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if n != 0 {
		t.Errorf("got %d replies from a missing host", n)
	}
}

func TestForwardingOff(t *testing.T) {
	topo := standard(t, "ptlabfwd", 203)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 1); got != 0 {
		t.Errorf("ping across node with ip_forward=0: %d replies, want 0", got)
	}
	// The node itself still answers.
	if got := ping(t, topo.Pod, topo.NodePodIP, 2); got != pingCount {
		t.Errorf("ping node: %d replies, want %d", got, pingCount)
	}
	// The host's setting must be untouched.
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host ip_forward=%s", strings.TrimSpace(string(b)))
}

func TestNftDropForward(t *testing.T) {
	topo := standard(t, "ptlabdrop", 204)
	if got := ping(t, topo.Pod, topo.ExtIP, 1); got != pingCount {
		t.Fatalf("before drop: %d replies", got)
	}
	if err := topo.Node.NftDropForward(topo.PodIP.String()); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, topo.Pod, topo.ExtIP, 2); got != 0 {
		t.Errorf("after drop: %d replies, want 0", got)
	}
	// Only forwarded traffic is dropped.
	if got := ping(t, topo.Pod, topo.NodePodIP, 3); got != pingCount {
		t.Errorf("ping node after drop: %d replies, want %d", got, pingCount)
	}
	// A second rule reuses the table and chain.
	if err := topo.Node.NftDropForward("10.204.9.0/24"); err != nil {
		t.Errorf("second NftDropForward: %v", err)
	}
}

func recvUDP(t *testing.T, c net.PacketConn) ([]byte, netip.AddrPort) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	ap := from.(*net.UDPAddr).AddrPort()
	return buf[:n], netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func TestUDPAcrossNode(t *testing.T) {
	topo := standard(t, "ptlabudp", 205)
	c, err := topo.Ext.ListenUDP(netip.AddrPortFrom(topo.ExtIP, 5000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := []byte("hello from pod")
	if err := topo.Pod.SendUDP(topo.ExtIP.String(), 40000, 5000, payload); err != nil {
		t.Fatal(err)
	}
	got, from := recvUDP(t, c)
	if !bytes.Equal(got, payload) {
		t.Errorf("payload %q, want %q", got, payload)
	}
	if want := netip.AddrPortFrom(topo.PodIP, 40000); from != want {
		t.Errorf("from %s, want %s", from, want)
	}
	// Ephemeral source port.
	if err := topo.Pod.SendUDP(topo.ExtIP.String(), 0, 5000, payload); err != nil {
		t.Fatal(err)
	}
	if _, from := recvUDP(t, c); from.Addr() != topo.PodIP || from.Port() == 0 {
		t.Errorf("ephemeral: from %s", from)
	}
}

func TestTCPEcho(t *testing.T) {
	topo := standard(t, "ptlabtcp", 206)
	l, err := topo.Ext.ListenTCP(":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := topo.Pod.DialTCP(netip.AddrPortFrom(topo.ExtIP, 7000).String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != topo.PodIP {
		t.Errorf("local address %s, want %s", got, topo.PodIP)
	}
	msg := []byte("echo me across the node")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("echo %q, want %q", got, msg)
	}
	if _, err := l.Accept(); err == nil {
		t.Error("Accept on the echo listener should fail")
	}
	// Closing the listener also ends open echo connections.
	if err := l.Close(); err != nil {
		t.Errorf("listener Close: %v", err)
	}
	if _, err := c.Read(got); err == nil {
		t.Error("connection still open after listener Close")
	}
}

func TestNftMasquerade(t *testing.T) {
	topo := standard(t, "ptlabmasq", 207)
	if err := topo.Node.NftMasquerade(topo.NodeExtIf); err != nil {
		t.Fatal(err)
	}
	c, err := topo.Ext.ListenUDP(":5001")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.SendUDP(topo.ExtIP.String(), 0, 5001, []byte("masq")); err != nil {
		t.Fatal(err)
	}
	_, from := recvUDP(t, c)
	if from.Addr() != topo.NodeExtIP {
		t.Errorf("ext sees source %s, want node address %s", from.Addr(), topo.NodeExtIP)
	}
	// Replies are un-NATed by conntrack, so ping still works end to end.
	if got := ping(t, topo.Pod, topo.ExtIP, 9); got != pingCount {
		t.Errorf("ping through masquerade: %d replies", got)
	}
}

func TestNftDNAT(t *testing.T) {
	topo := standard(t, "ptlabdnat", 208)
	vip := netip.AddrFrom4([4]byte{10, 208, 3, 100})
	if got := ping(t, topo.Pod, vip, 1); got != 0 {
		t.Fatalf("VIP answered before DNAT: %d", got)
	}
	if err := topo.Node.NftDNAT(vip.String(), topo.ExtIP.String()); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, topo.Pod, vip, 2); got != pingCount {
		t.Errorf("ping VIP: %d replies, want %d", got, pingCount)
	}
	c, err := topo.Ext.ListenUDP(":5002")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Pod.SendUDP(vip.String(), 41000, 5002, []byte("to vip")); err != nil {
		t.Fatal(err)
	}
	got, from := recvUDP(t, c)
	if string(got) != "to vip" || from != netip.AddrPortFrom(topo.PodIP, 41000) {
		t.Errorf("got %q from %s", got, from)
	}
}

func TestCloseRemovesNamespaces(t *testing.T) {
	needRoot(t)
	l, err := New("ptlabclose")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(a, "v0", "10.209.0.1/30", b, "v1", "10.209.0.2/30"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListenUDP(":9"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*NS{a, b} {
		if _, err := os.Stat(ns.Path()); err != nil {
			t.Fatalf("%s: %v", ns.Name(), err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, ns := range []*NS{a, b} {
		if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Close: %v", ns.Path(), err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.AddNS("c"); err == nil {
		t.Error("AddNS after Close succeeded")
	}
	if err := a.Sysctl("net.ipv4.ip_forward", "1"); err == nil {
		t.Error("Sysctl after Close succeeded")
	}
}

func TestNewRemovesStale(t *testing.T) {
	needRoot(t)
	const prefix = "ptlabstale"
	old, err := New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.AddNS("x"); err != nil {
		t.Fatal(err)
	}
	// A crash between creating the placeholder and mounting on it leaves a
	// plain file.
	plain := filepath.Join(netnsRunDir, prefix+"-y")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	// Another lab whose prefix extends ours must survive.
	other, err := New(prefix + "-keep")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	keep, err := other.AddNS("z")
	if err != nil {
		t.Fatal(err)
	}

	l, err := New(prefix) // "old" is never closed first: that is the crash
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, p := range []string{filepath.Join(netnsRunDir, prefix+"-x"), plain} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s not removed: %v", p, err)
		}
	}
	if _, err := os.Stat(keep.Path()); err != nil {
		t.Errorf("lab %s-keep was removed: %v", prefix, err)
	}
	if _, err := l.AddNS("x"); err != nil {
		t.Errorf("AddNS after stale removal: %v", err)
	}
	// Closing the superseded lab must not take the new lab's namespace
	// with the same name along.
	if err := old.Close(); err != nil {
		t.Errorf("old Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(netnsRunDir, prefix+"-x")); err != nil {
		t.Errorf("old Close removed the new lab's namespace: %v", err)
	}
}

// hostThreadsClean checks that no thread of the test process was left inside
// a lab namespace.
func hostThreadsClean(t *testing.T, host string) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		p := filepath.Join("/proc/self/task", task.Name(), "ns/net")
		s, err := os.Readlink(p)
		if err != nil {
			continue // thread exited meanwhile
		}
		if s != host {
			t.Errorf("thread %s is in %s, want host %s", task.Name(), s, host)
		}
	}
}

func TestDoAndInode(t *testing.T) {
	needRoot(t)
	runtime.LockOSThread()
	host := netnsLink(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()

	l, err := New("ptlabdo")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() != "ptlabdo-a" {
		t.Errorf("Name = %q", a.Name())
	}
	var st unix.Stat_t
	if err := unix.Stat(a.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if uint64(a.Inode()) != st.Ino || a.Inode() == b.Inode() {
		t.Errorf("inodes a=%d (stat %d) b=%d", a.Inode(), st.Ino, b.Inode())
	}
	var inside string
	if err := a.Do(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", a.Inode()); inside != want {
		t.Errorf("inside Do: %s, want %s", inside, want)
	}
	wantErr := errors.New("boom")
	if err := a.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do error = %v", err)
	}
	if err := a.Do(func() error { panic("in ns") }); err == nil {
		t.Error("panic in Do not reported")
	}
	// lo is up in a new namespace.
	if n, err := a.Ping("127.0.0.1", 5, 1, 0, time.Second); err != nil || n != 1 {
		t.Errorf("ping lo: %d, %v", n, err)
	}
	hostThreadsClean(t, host)

	if err := a.Sysctl("kernel.hostname", "x"); err == nil {
		t.Error("non-net sysctl accepted")
	}
	if err := a.Sysctl("net.ipv4.conf.../../../kernel", "x"); err == nil {
		t.Error("path escape accepted")
	}
}

func TestPartialFailure(t *testing.T) {
	needRoot(t)
	l, err := New("ptlabpart")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddNS("a"); err == nil {
		t.Error("duplicate AddNS succeeded")
	}
	if _, err := l.AddNS("bad-name"); err == nil {
		t.Error("name with '-' accepted")
	}
	b, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	err = l.Veth(a, "v0", "10.210.0.1/24", b, "v1", "not-a-cidr")
	if err == nil || !strings.Contains(err.Error(), "veth v0-v1") {
		t.Errorf("bad CIDR: %v", err)
	}
	// Valid pair, then the same names again: the kernel refuses.
	if err := l.Veth(a, "v0", "10.210.0.1/24", b, "v1", "10.210.0.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(a, "v0", "", b, "v2", ""); err == nil {
		t.Error("duplicate device accepted")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*NS{a, b} {
		if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", ns.Path())
		}
	}
}

func TestIPv6Ping(t *testing.T) {
	needRoot(t)
	l, err := New("ptlabv6")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(a, "eth0", "fd00:211::1/64", b, "eth0", "fd00:211::2/64"); err != nil {
		t.Fatal(err)
	}
	n, err := a.Ping("fd00:211::2", 42, pingCount, pingInterval, pingTimeout)
	if err != nil || n != pingCount {
		t.Errorf("ping6: %d replies, %v", n, err)
	}
	c, err := b.ListenUDP("[fd00:211::2]:5003")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SendUDP("fd00:211::2", 5004, 5003, []byte("v6")); err != nil {
		t.Fatal(err)
	}
	if _, from := recvUDP(t, c); from != netip.MustParseAddrPort("[fd00:211::1]:5004") {
		t.Errorf("v6 from %s", from)
	}
}

func TestPingConcurrentIDs(t *testing.T) {
	topo := standard(t, "ptlabids", 212)
	// Every raw ICMP socket in pod sees every reply; each Ping must count
	// only its own, including two Pings that share an id.
	ids := []uint16{100, 101, 101}
	results := make(chan string, len(ids))
	for _, id := range ids {
		go func() {
			n, err := topo.Pod.Ping(topo.ExtIP.String(), id, 5, 20*time.Millisecond, time.Second)
			results <- fmt.Sprintf("id %d: %d %v", id, n, err)
		}()
	}
	for range ids {
		if r := <-results; !strings.HasSuffix(r, ": 5 <nil>") {
			t.Error(r)
		}
	}
}

func TestPingNoRoute(t *testing.T) {
	needRoot(t)
	l, err := New("ptlabnoroute")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	// A namespace with only lo has no route, so nothing is ever sent.
	n, err := a.Ping("10.213.0.1", 1, 1, 0, 100*time.Millisecond)
	if err == nil || !errors.Is(err, unix.ENETUNREACH) || n != 0 {
		t.Errorf("Ping without route: %d, %v", n, err)
	}
	if err := a.SendUDP("10.213.0.1", 0, 9, nil); err == nil {
		t.Error("SendUDP without route succeeded")
	}
}

func TestEchoPacket(t *testing.T) {
	token := []byte("ABCDEFGH")
	req := echoRequest(icmpv4EchoRequest, 0xbeef, 7, token)
	if checksum(req) != 0 {
		t.Errorf("request checksum does not verify: %#x", checksum(req))
	}
	reply := append([]byte(nil), req...)
	reply[0] = icmpv4EchoReply
	if seq, ok := parseEchoReply(reply, icmpv4EchoReply, 0xbeef, token); !ok || seq != 7 {
		t.Errorf("parse reply: %d %v", seq, ok)
	}
	if _, ok := parseEchoReply(reply, icmpv4EchoReply, 0xbeee, token); ok {
		t.Error("reply with another id accepted")
	}
	if _, ok := parseEchoReply(reply, icmpv4EchoReply, 0xbeef, []byte("ABCDEFGX")); ok {
		t.Error("reply with another token accepted")
	}
	if _, ok := parseEchoReply(req, icmpv4EchoReply, 0xbeef, token); ok {
		t.Error("request taken for a reply")
	}
	// RFC 1071 example bytes.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("checksum = %#x", got)
	}
}

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":              "/proc/sys/net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.100/rp_filter": "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		"kernel.hostname":                  "",
		"net/../kernel/hostname":           "",
		"net":                              "",
	} {
		got, err := sysctlPath(key)
		if want == "" {
			if err == nil {
				t.Errorf("%s: accepted as %s", key, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", key, got, err, want)
		}
	}
}

func TestIsLabEntry(t *testing.T) {
	for _, c := range []struct {
		prefix, entry string
		want          bool
	}{
		{"pt", "pt-pod", true},
		{"pt", "pt-", false},
		{"pt", "pt-x-pod", false},
		{"pt-x", "pt-x-pod", true},
		{"pt", "ptx-pod", false},
		{"pt", "other", false},
	} {
		if got := isLabEntry(c.prefix, c.entry); got != c.want {
			t.Errorf("isLabEntry(%q, %q) = %v", c.prefix, c.entry, got)
		}
	}
}
