package tracer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
}

// onPrograms lists the kernel's BPF programs named like pathtrace's.
func onPrograms(t *testing.T) map[ebpf.ProgramID]string {
	t.Helper()
	progs, err := LoadedPrograms()
	if err != nil {
		t.Fatal(err)
	}
	return progs
}

// holders lists the other processes that hold program id through a program or link fd.
func holders(id ebpf.ProgramID) []int {
	var pids []int
	want := fmt.Sprintf("prog_id:\t%d\n", id)
	dirs, _ := filepath.Glob("/proc/[0-9]*/fdinfo")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(strings.Split(d, "/")[2])
		if pid == os.Getpid() {
			continue
		}
		fds, _ := os.ReadDir(d)
		for _, fd := range fds {
			b, err := os.ReadFile(filepath.Join(d, fd.Name()))
			if err == nil && strings.Contains(string(b), want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// bpfFDs counts this process's open BPF program and link fds.
func bpfFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err != nil {
			continue
		}
		if target == "anon_inode:bpf-prog" || target == "anon_inode:bpf_link" {
			n++
		}
	}
	return n
}

// assertNoneLeft waits up to 3s for every pathtrace-named program that was not there before (and that no
// other process holds: pathtrace may be running beside the tests) to leave the kernel.
func assertNoneLeft(t *testing.T, before map[ebpf.ProgramID]string, ours []ebpf.ProgramID) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var left []string
		now := onPrograms(t)
		for _, id := range ours {
			if name, ok := now[id]; ok {
				left = append(left, fmt.Sprintf("%d %s (ours)", id, name))
				delete(now, id)
			}
		}
		for id, name := range now {
			if _, ok := before[id]; ok {
				continue
			}
			if pids := holders(id); len(pids) > 0 {
				t.Logf("ignoring program %d %s: held by pid %v", id, name, pids)
				continue
			}
			left = append(left, fmt.Sprintf("%d %s", id, name))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BPF programs still loaded 3s after Close: %s", strings.Join(left, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func programIDs(t *testing.T, tr *Tracer) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	for _, p := range tr.probes {
		info, err := p.prog.Info()
		if err != nil {
			t.Fatalf("program info: %v", err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("kernel does not report program IDs")
		}
		if !IsOwnProgram(info.Name) {
			t.Errorf("program %d is named %q, not as pathtrace's are", id, info.Name)
		}
		ids = append(ids, id)
	}
	return ids
}

// kernelHasDropReasons says whether the kernel reports why it drops a packet (enum
// skb_drop_reason in its BTF, 5.17+), read here independently of the tracer's own detection.
func kernelHasDropReasons(t *testing.T) bool {
	t.Helper()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	return kernel.TypeByName("skb_drop_reason", &e) == nil
}

func testFilter(t *testing.T, src, dst string, proto trace.Proto, dport uint16) trace.Filter {
	t.Helper()
	s, err := trace.ParseAddr(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := trace.ParseAddr(dst)
	if err != nil {
		t.Fatal(err)
	}
	f, err := trace.NewFilter(s, d, proto, 0, dport)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestOpenClose(t *testing.T) {
	needRoot(t)
	before := onPrograms(t)
	fdsBefore := bpfFDs(t)

	// Documentation addresses: nothing on this host sends such packets.
	tr, err := Open(Config{Filter: testFilter(t, "192.0.2.1", "198.51.100.0/24", trace.ProtoUDP, 9)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			tr.Close()
		}
	}()

	// The tracepoint hooks come first, then the function hooks of the backend this kernel
	// allows (none on a kernel that refuses fentry and has no kprobes, as the dev VM).
	probes := tr.Probes()
	if len(probes) < len(hooks) {
		t.Fatalf("Probes() has %d entries, want at least %d (one per tracepoint hook)", len(probes), len(hooks))
	}
	for i, p := range probes[:len(hooks)] {
		if p.Name != hooks[i].tracepoint {
			t.Errorf("probe %d is %q, want %q", i, p.Name, hooks[i].tracepoint)
		}
		if !p.Attached || p.Program != "tp_btf" || p.Error != "" {
			t.Errorf("probe %s: attached=%v program=%q error=%q; want attached tp_btf on this kernel", p.Name, p.Attached, p.Program, p.Error)
		}
	}
	funcs := probes[len(hooks):]
	attached := 0
	for _, p := range funcs {
		if p.Program != tr.Backend() {
			t.Errorf("function probe %s: program %q, want the backend's (%s)", p.Name, p.Program, tr.Backend())
		}
		if p.Attached {
			attached++
		}
	}
	ours := programIDs(t, tr)
	switch tr.Backend() {
	case BackendTracepoint:
		if len(funcs) != 0 || len(ours) != len(hooks) {
			t.Errorf("tracepoint backend: %d function probes and %d programs, want none and %d", len(funcs), len(ours), len(hooks))
		}
	case BackendFentry, BackendKprobe:
		if len(funcs) != len(funcHooks) || attached == 0 {
			t.Errorf("%s backend: %d function probes, %d attached; want %d, some attached", tr.Backend(), len(funcs), attached, len(funcHooks))
		}
		if len(ours) < len(hooks)+attached {
			t.Errorf("%d programs loaded, want at least %d", len(ours), len(hooks)+attached)
		}
	default:
		t.Errorf("Backend() = %q", tr.Backend())
	}
	// The kernel-wide scan sees them: the check after Close is not vacuous.
	loaded := onPrograms(t)
	for _, id := range ours {
		if _, ok := loaded[id]; !ok {
			t.Errorf("our program %d is missing from the kernel's program list", id)
		}
	}
	if n := bpfFDs(t); n < fdsBefore+len(ours) {
		t.Errorf("%d BPF program/link fds open while loaded, want at least %d", n, fdsBefore+len(ours))
	}
	reasons := kernelHasDropReasons(t)
	saysNoReasons := false
	for _, d := range tr.Degraded() {
		if strings.Contains(d, "tracepoints unavailable") {
			t.Errorf("degraded on a kernel with every tracepoint: %s", d)
		}
		saysNoReasons = saysNoReasons || strings.Contains(d, "no drop reasons")
	}
	if saysNoReasons == reasons {
		t.Errorf("kernel has drop reasons: %v; degradations %q", reasons, tr.Degraded())
	}
	// Open starts reading the kernel's symbols; Symbols waits for them.
	if err := tr.Symbols(); err != nil {
		t.Errorf("Symbols: %v", err)
	}
	if tab, _ := tr.syms.wait(); tab.Len() < 1000 {
		t.Errorf("%d kernel symbols read, want the kernel's (thousands)", tab.Len())
	}
	if a, b := tr.NowNS(), tr.NowNS(); b < a || a > uint64(time.Minute) {
		t.Errorf("NowNS went %d then %d", a, b)
	}

	st, err := tr.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Lost != 0 {
		t.Errorf("Stats().Lost = %d, want 0", st.Lost)
	}
	if st.TrackFull != 0 {
		t.Errorf("Stats().TrackFull = %d, want 0", st.TrackFull)
	}

	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := bpfFDs(t); n != fdsBefore {
		t.Errorf("%d BPF program/link fds open after Close, %d before Open", n, fdsBefore)
	}
	assertNoneLeft(t, before, ours)
}

func TestOpenIPv6Filter(t *testing.T) {
	needRoot(t)
	before := onPrograms(t)
	tr, err := Open(Config{Filter: testFilter(t, "2001:db8::/64", "2001:db8:1::1", trace.ProtoICMPv6, 0)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ours := programIDs(t, tr)
	// Every tracepoint hook attaches; a function hook may not (fentry on a module's function,
	// br_forward, needs 5.11+), and then says why.
	for i, p := range tr.Probes() {
		if !p.Attached && (i < len(hooks) || p.Error == "") {
			t.Errorf("probe %s not attached: %q", p.Name, p.Error)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoneLeft(t, before, ours)
}

func TestOpenNoBTF(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("this is not BTF"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), garbage} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			before := onPrograms(t)
			fdsBefore := bpfFDs(t)
			tr, err := Open(Config{KernelBTF: path, Filter: testFilter(t, "192.0.2.1", "", trace.ProtoAny, 0)})
			if err == nil {
				tr.Close()
				t.Fatalf("Open with KernelBTF %s succeeded", path)
			}
			if tr != nil {
				t.Errorf("Open returned a Tracer with its error")
			}
			if !errors.Is(err, ErrNoBTF) {
				t.Errorf("error %v does not wrap ErrNoBTF", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if n := bpfFDs(t); n != fdsBefore {
				t.Errorf("%d BPF program/link fds open after a failed Open, %d before", n, fdsBefore)
			}
			assertNoneLeft(t, before, nil)
		})
	}
}

// TestRunSeesDrop sends UDP to a closed port on loopback: the kernel drops it with NO_SOCKET,
// and the tracer must report that drop with the packet's tuple.
func TestRunSeesDrop(t *testing.T) {
	needRoot(t)
	port := closedLoopbackPort(t)
	filter := testFilter(t, "127.0.0.1", "127.0.0.1", trace.ProtoUDP, port)
	tr, err := Open(Config{Filter: filter})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tr.Close()

	events, done, stop := runUntilStopped(t, tr)

	conn, want := dialLoopback(t, port)
	got, drop := awaitDrop(t, conn, "pathtrace test", events, done)

	for _, e := range got {
		t.Logf("%s %s %s %s", e.Hop.Event, e.Hop.Ifname, e.Hop.Reason, e.Hop.Location)
	}
	h := drop.Hop
	if kernelHasDropReasons(t) {
		if h.Reason != "NO_SOCKET" || h.ReasonCode == 0 {
			t.Errorf("drop reason %q (code %d), want NO_SOCKET", h.Reason, h.ReasonCode)
		}
	} else if h.Reason != "" || h.ReasonCode != 0 {
		// __udp4_lib_rcv drops for several reasons: none is inferred from it.
		t.Errorf("drop reason %q (code %d) on a kernel that reports none, want none", h.Reason, h.ReasonCode)
	}
	if !strings.HasPrefix(h.Location, "__udp4_lib_rcv+0x") || drop.SKB == 0 {
		t.Errorf("drop hop lacks its location (__udp4_lib_rcv) or skb: %+v skb %#x", h, drop.SKB)
	}
	if h.Probe != "skb:kfree_skb" {
		t.Errorf("drop probe %q", h.Probe)
	}
	if h.Tuple.Tuple != want {
		t.Errorf("drop tuple %+v, want %+v", h.Tuple.Tuple, want)
	}
	self, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if h.Netns != self {
		t.Errorf("drop netns %d, want ours %d", h.Netns, self)
	}
	if self == tr.netns.Host() && h.NetnsName != "host" {
		t.Errorf("drop in the host netns named %q", h.NetnsName)
	}
	if h.TimeNS == 0 || h.TimeNS > tr.NowNS() {
		t.Errorf("drop TimeNS %d not within the trace (now %d)", h.TimeNS, tr.NowNS())
	}
	// The filter is bidirectional but narrow: nothing else may come through.
	for _, e := range got {
		if e.Hop.Tuple != nil {
			if _, ok := filter.Direction(e.Hop.Tuple.Tuple); !ok {
				t.Errorf("event outside the filter: %+v", e.Hop)
			}
		}
	}

	stop()
	st, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Events == 0 || st.Lost != 0 {
		t.Errorf("stats %+v: want events and none lost", st)
	}
	// Run drained the ring buffer: it received every event the kernel wrote.
	if tr.Received() != st.Events {
		t.Errorf("received %d events, the kernel wrote %d", tr.Received(), st.Events)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
}

// closedLoopbackPort is a UDP port on 127.0.0.1 that nothing listens on: one that was open a
// moment ago.
func closedLoopbackPort(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()
	return port
}

// dialLoopback is a UDP socket sending to port on 127.0.0.1, closed when the test ends, and the
// tuple of what it sends.
func dialLoopback(t *testing.T, port uint16) (*net.UDPConn, trace.Tuple) {
	t.Helper()
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lo := netip.MustParseAddr("127.0.0.1")
	return conn, trace.Tuple{Proto: trace.ProtoUDP, Src: lo, Dst: lo, Sport: uint16(conn.LocalAddr().(*net.UDPAddr).Port), Dport: port}
}

// runUntilStopped runs tr on a goroutine of its own, its events on a channel that drops what
// the test does not take; done has Run's end, for a wait on events to notice an early one.
// stop ends the run and checks it ends without error within 5 s; the test's end cancels it too.
func runUntilStopped(t *testing.T, tr *Tracer) (events <-chan trace.Event, done <-chan error, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	evs := make(chan trace.Event, 1024)
	ended := make(chan error, 1)
	go func() {
		ended <- tr.Run(ctx, func(e trace.Event) {
			select {
			case evs <- e:
			default:
			}
		}, func(uint64) {})
	}()
	return evs, ended, func() {
		t.Helper()
		cancel()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of cancel")
		}
	}
}

// awaitDrop sends payload on conn, again every 200ms (the error of an earlier send,
// ECONNREFUSED, is expected), until the kernel reports the drop of a datagram from conn's port.
// It returns every event seen by then and the drop among them.
func awaitDrop(t *testing.T, conn *net.UDPConn, payload string, events <-chan trace.Event, done <-chan error) ([]trace.Event, *trace.Event) {
	t.Helper()
	sport := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	var got []trace.Event
	timeout := time.After(10 * time.Second)
	send := time.NewTicker(200 * time.Millisecond)
	defer send.Stop()
	conn.Write([]byte(payload))
	for {
		select {
		case e := <-events:
			got = append(got, e)
			if e.Hop.Event == trace.KindDrop && e.Hop.Tuple != nil && e.Hop.Tuple.Sport == sport {
				return got, &got[len(got)-1]
			}
		case <-send.C:
			conn.Write([]byte(payload))
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-timeout:
			t.Fatalf("no drop of a datagram from %v to %v within 10s (%q); saw %d events: %+v",
				conn.LocalAddr(), conn.RemoteAddr(), payload, len(got), got)
		}
	}
}
