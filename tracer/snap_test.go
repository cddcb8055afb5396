package tracer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headersLen keeps the headers and cuts the payload, tunnels and ICMP errors included.
func TestHeadersLen(t *testing.T) {
	ipv4UDP := "45000030 00010000 40110000 0a000102 0a000202" + "d4310035 001c0000"
	vxlan := "45000060 00010000 40110000 c0a80101 c0a80102" + "c00012b5 004c0000" + "08000000 00006400" +
		"020000000001 020000000002 0800" + "45000054 1c460000 40010000 0a000102 0a000202" + "08000000 7a7a0001"
	for _, c := range []struct {
		name    string
		pkt     string
		payload int // bytes of payload after the headers
		want    int
	}{
		{"udp", ipv4UDP, 20, 28},
		{"tcp with options", "45000040 00010000 40060000 0a000102 0a000202" + "d4310050 00000001 00000000 80120000 00000000" + "0101080a00000000 00000000", 30, 52},
		{"icmp echo", "45000054 1c460000 40010000 0a000102 0a000202" + "08000000 7a7a0001", 56, 28},
		{"icmp unreachable quotes the headers", "45000038 00010000 40010000 0a000001 0a000102" + "03030000 00000000" + ipv4UDP, 4, 56},
		{"later fragment", "45000030 000100b9 40110000 0a000102 0a000202", 28, 20},
		{"ipv6 udp", "60000000 00101140 fd000000000000000000000000000001 fd000000000000000000000000000002" + "d4310035 00100000", 8, 48},
		{"ipv6 hop-by-hop then icmpv6", "60000000 00180040 fd000000000000000000000000000001 fd000000000000000000000000000002" +
			"3a000000 00000000" + "80000000 7a7a0001", 8, 56},
		{"vxlan carries an icmp echo", vxlan, 56, 20 + 8 + 8 + 14 + 28},
		{"ipip", "45000068 00010000 40040000 c0a80101 c0a80102" + "45000054 1c460000 40010000 0a000102 0a000202" + "08000000 7a7a0001", 56, 48},
		{"not ip", "00112233", 0, 0},
	} {
		b := append(unhex(t, c.pkt), bytes.Repeat([]byte{0xaa}, c.payload)...)
		if got := headersLen(b, 2); got != c.want {
			t.Errorf("%s: headersLen %d, want %d", c.name, got, c.want)
		}
		for n := range b { // cut short anywhere (the kernel's 128 bytes, a short linear part)
			if got := headersLen(b[:n], 2); got > n {
				t.Fatalf("%s: headersLen of %d bytes is %d", c.name, n, got)
			}
		}
	}
}

// A record with its snap decodes to a hop with the headers, and one without to a hop with none.
func TestDecodeSnap(t *testing.T) {
	tr := testTracer(t, nil)
	ev := bpf.PathtraceEvent{Ts: 1_000_500, Kind: bpf.PathtraceEventKindEV_RECEIVE, Netns: 4026531840,
		Pkt: bpf.PathtracePacket{Saddr: addr16("10.0.1.2"), Daddr: addr16("10.0.2.2"), Family: 4, Proto: 1}}
	pkt := unhex(t, "45000054 1c460000 40010000 0a000102 0a000202"+"08000000 7a7a0001")
	var s bpf.PathtraceSnap
	s.Len = uint16(copy(s.Data[:], append(pkt, "payload, never kept"...)))
	var buf bytes.Buffer
	binary.Write(&buf, binary.NativeEndian, &ev)
	plain := bytes.Clone(buf.Bytes())
	binary.Write(&buf, binary.NativeEndian, &s)
	if buf.Len() != int(unsafe.Sizeof(bpf.PathtraceEvent{})+unsafe.Sizeof(bpf.PathtraceSnap{})) {
		t.Fatalf("record of %d bytes", buf.Len())
	}
	var got trace.Event
	if ok := tr.decode(buf.Bytes(), &got); !ok || !bytes.Equal(got.Hop.Bytes, pkt) {
		t.Errorf("decode with snap: ok %v, bytes %x, want %x", ok, got.Hop.Bytes, pkt)
	}
	// Decoded into the same event, as the ring-buffer reader does: the bytes must not stay.
	if ok := tr.decode(plain, &got); !ok || got.Hop.Bytes != nil {
		t.Errorf("decode without snap: ok %v, bytes %x, want none", ok, got.Hop.Bytes)
	}
}

// TestRunSnapsHeaders: with Snap, every hop of a real packet carries its headers as the kernel
// held them, from the IP header: the addresses and ports the hop's tuple says, and no payload.
// Each build of the hooks (see TestHookBuilds) must load with the copy and make it.
func TestRunSnapsHeaders(t *testing.T) {
	needRoot(t)
	all := hookBuilds
	defer func() { hookBuilds = all }()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	_, castErr := kernel.AnyTypeByName("bpf_rdonly_cast")
	for i, b := range all {
		if i == 0 && castErr != nil {
			continue // this kernel refuses the build (TestHookBuilds)
		}
		t.Run(b.name, func(t *testing.T) {
			hookBuilds = []hookBuild{b}
			snapWith(t)
		})
	}
}

func snapWith(t *testing.T) {
	port := closedLoopbackPort(t)
	filter := testFilter(t, "127.0.0.1", "127.0.0.1", trace.ProtoUDP, port)
	tr, err := Open(Config{Filter: filter, Snap: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tr.Close()
	events, done, stop := runUntilStopped(t, tr)
	conn, want := dialLoopback(t, port)
	got, _ := awaitDrop(t, conn, "pathtrace snap test: a payload", events, done)
	stop()
	hops := 0
	for _, e := range got {
		h := e.Hop
		if h.Tuple == nil || h.Tuple.Tuple != want {
			continue
		}
		hops++
		b := h.Bytes
		t.Logf("%s %s: % x", h.Event, h.Ifname, b)
		if len(b) != 28 || b[0] != 0x45 || b[9] != 17 {
			t.Errorf("%s hop: %d bytes % x, want an IPv4 and UDP header (28 bytes)", h.Event, len(b), b)
			continue
		}
		if [4]byte(b[12:16]) != want.Src.As4() || [4]byte(b[16:20]) != want.Dst.As4() ||
			binary.BigEndian.Uint16(b[20:]) != want.Sport || binary.BigEndian.Uint16(b[22:]) != want.Dport {
			t.Errorf("%s hop: bytes % x are not the tuple %v", h.Event, b, want)
		}
		if binary.BigEndian.Uint16(b[2:]) != 20+8+uint16(len("pathtrace snap test: a payload")) {
			t.Errorf("%s hop: IP total length %d", h.Event, binary.BigEndian.Uint16(b[2:]))
		}
	}
	if hops < 2 {
		t.Errorf("%d hops of the packet, want its way out and its drop", hops)
	}
}

// BenchmarkDecodeSnap is BenchmarkDecode with --pcapng's records: each event followed by the
// packet's first bytes (an IPv4 and UDP header and 64 bytes of payload, which are cut).
func BenchmarkDecodeSnap(b *testing.B) {
	tr := testTracer(b, nil)
	recs := floodRecords(b)
	var s bpf.PathtraceSnap
	udp := []byte{0x45, 0, 0, 92, 0, 77, 0x40, 0, 64, 17, 0, 0, 10, 60, 1, 2, 10, 60, 2, 2, 0x9c, 0x40, 0x14, 0x51, 0, 72, 0, 0}
	s.Len = uint16(copy(s.Data[:], append(udp, bytes.Repeat([]byte{0xaa}, 64)...)))
	tail := unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s))
	for i := range recs {
		recs[i] = append(recs[i], tail...)
	}
	benchDecode(b, tr, recs)
}
