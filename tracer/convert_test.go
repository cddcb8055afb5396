package tracer

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/dropreason"
	"github.com/pathtrace/pathtrace/tracer/ksym"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// be16 is the value a __be16 field holds in memory when the wire carries v: the kernel copies
// header bytes as they are, and the Go struct reads them in host order.
func be16(v uint16) uint16 { return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)) }
func be32(v uint32) uint32 { return binary.NativeEndian.Uint32(binary.BigEndian.AppendUint32(nil, v)) }

func addr16(s string) [16]uint8 {
	a := netip.MustParseAddr(s)
	var b [16]uint8
	copy(b[:], a.AsSlice())
	return b
}

func cName(s string) [16]int8 {
	var b [16]int8
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

// wire is how the BPF program sees a 16-bit filter field: the bytes in memory.
func wire(v uint16) [2]byte {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return b
}

// addrEq lets cmp compare netip.Addr, whose fields are unexported.
var addrEq = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func mask(bytes ...byte) [16]uint8 {
	var m [16]uint8
	copy(m[:], bytes)
	return m
}

func TestKernelFilterPrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name       string
		prefix     netip.Prefix
		wantAddr   [16]uint8
		wantMask   [16]uint8
		wantFamily uint8
	}{
		{"v4 /32", p("10.0.1.2/32"), mask(10, 0, 1, 2), mask(0xff, 0xff, 0xff, 0xff), 4},
		{"v4 /24", p("10.0.1.0/24"), mask(10, 0, 1, 0), mask(0xff, 0xff, 0xff, 0), 4},
		// Unmasked host bits (a Filter built without ParseAddr) are cleared for the kernel.
		{"v4 /24 host bits", p("10.0.1.77/24"), mask(10, 0, 1, 0), mask(0xff, 0xff, 0xff, 0), 4},
		{"v4 /20", p("10.1.31.255/20"), mask(10, 1, 16, 0), mask(0xff, 0xff, 0xf0, 0), 4},
		{"v4 /1", p("200.0.0.0/1"), mask(128), mask(0x80), 4},
		{"v4 /0", p("0.0.0.0/0"), mask(), mask(), 4},
		{"v4 /0 host bits", p("8.8.8.8/0"), mask(), mask(), 4},
		{"v6 /128", p("2001:db8::1/128"), addr16("2001:db8::1"),
			mask(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 6},
		{"v6 /64", p("2001:db8:1:2:aaaa:bbbb:cccc:dddd/64"), addr16("2001:db8:1:2::"),
			mask(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 6},
		{"v6 /61", p("2001:db8:1:ffff::/61"), addr16("2001:db8:1:fff8::"),
			mask(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf8), 6},
		{"v6 /0", p("::/0"), mask(), mask(), 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, side := range []string{"src", "dst"} {
				f := trace.Filter{}
				if side == "src" {
					f.Src = c.prefix
				} else {
					f.Dst = c.prefix
				}
				k := kernelFilter(f)
				gotAddr, gotMask := k.Src, k.SrcMask
				otherAddr, otherMask := k.Dst, k.DstMask
				if side == "dst" {
					gotAddr, gotMask, otherAddr, otherMask = k.Dst, k.DstMask, k.Src, k.SrcMask
				}
				if gotAddr != c.wantAddr {
					t.Errorf("%s addr = % x, want % x", side, gotAddr, c.wantAddr)
				}
				if gotMask != c.wantMask {
					t.Errorf("%s mask = % x, want % x", side, gotMask, c.wantMask)
				}
				if otherAddr != ([16]uint8{}) || otherMask != ([16]uint8{}) {
					t.Errorf("%s only: the other side is % x/% x, want zero (any)", side, otherAddr, otherMask)
				}
				if k.Family != c.wantFamily {
					t.Errorf("%s only: family = %d, want %d", side, k.Family, c.wantFamily)
				}
				// The kernel checks (addr & mask) == want: want must have no bits outside mask.
				for i := range gotAddr {
					if gotAddr[i]&^gotMask[i] != 0 {
						t.Errorf("%s byte %d: addr %#x has bits outside mask %#x", side, i, gotAddr[i], gotMask[i])
					}
				}
			}
		})
	}
}

func TestKernelFilterFamilyProtoPorts(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name         string
		f            trace.Filter
		wantFamily   uint8
		wantProto    uint8
		sport, dport [2]byte
	}{
		{"empty", trace.Filter{}, 0, 0, [2]byte{}, [2]byte{}},
		{"proto only", trace.Filter{Proto: trace.ProtoICMPv6}, 0, 58, [2]byte{}, [2]byte{}},
		{"v4 both", trace.Filter{Src: p("10.0.0.1/32"), Dst: p("10.0.0.2/32"), Proto: trace.ProtoICMP}, 4, 1, [2]byte{}, [2]byte{}},
		{"v6 dst", trace.Filter{Dst: p("2001:db8::/32"), Proto: trace.ProtoTCP, Dport: 443}, 6, 6, [2]byte{}, [2]byte{0x01, 0xbb}},
		{"ports only", trace.Filter{Proto: trace.ProtoUDP, Sport: 53, Dport: 0x1234}, 0, 17, [2]byte{0x00, 0x35}, [2]byte{0x12, 0x34}},
		{"max port", trace.Filter{Proto: trace.ProtoTCP, Sport: 65535, Dport: 256}, 0, 6, [2]byte{0xff, 0xff}, [2]byte{0x01, 0x00}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := kernelFilter(c.f)
			if k.Family != c.wantFamily {
				t.Errorf("family = %d, want %d", k.Family, c.wantFamily)
			}
			if k.Proto != c.wantProto {
				t.Errorf("proto = %d, want %d", k.Proto, c.wantProto)
			}
			if got := wire(k.Sport); got != c.sport {
				t.Errorf("sport bytes = % x, want % x (network order)", got, c.sport)
			}
			if got := wire(k.Dport); got != c.dport {
				t.Errorf("dport bytes = % x, want % x (network order)", got, c.dport)
			}
			if k.Pad != 0 {
				t.Errorf("pad = %d", k.Pad)
			}
		})
	}
}

func TestHtons(t *testing.T) {
	for _, v := range []uint16{0, 1, 0x1234, 0xff00, 65535} {
		if got := htons(v); got != be16(v) {
			t.Errorf("htons(%#x) = %#x, want %#x", v, got, be16(v))
		}
		if htons(htons(v)) != v {
			t.Errorf("htons is not its own inverse for %#x", v)
		}
	}
}

func TestHeaders(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		name string
		pkt  bpf.PathtracePacket
		want trace.Headers
	}{
		{
			name: "ipv4 icmp echo",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("10.0.1.2"), Daddr: addr16("8.8.8.8"), Family: 4, Proto: 1, Ttl: 64,
				Sport: be16(0x1234), Dport: be16(0x1234), IpId: be16(0xbeef),
				IcmpType: 8, IcmpSeq: be16(7),
			},
			want: trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: a("10.0.1.2"), Dst: a("8.8.8.8"), Sport: 0x1234, Dport: 0x1234},
				IPID:  0xbeef, TTL: 64, ICMPType: 8, ICMPID: 0x1234, ICMPSeq: 7,
			},
		},
		{
			name: "ipv4 icmp echo reply",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("8.8.8.8"), Daddr: addr16("10.0.1.2"), Family: 4, Proto: 1, Ttl: 117,
				Sport: be16(0x00ff), Dport: be16(0x00ff), IcmpSeq: be16(0x0102),
			},
			want: trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: a("8.8.8.8"), Dst: a("10.0.1.2"), Sport: 0xff, Dport: 0xff},
				TTL:   117, ICMPID: 0xff, ICMPSeq: 0x0102,
			},
		},
		{
			name: "ipv4 icmp port unreachable",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("10.0.0.1"), Daddr: addr16("10.0.0.2"), Family: 4, Proto: 1, Ttl: 64,
				IcmpType: 3, IcmpCode: 3,
			},
			want: trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoICMP, Src: a("10.0.0.1"), Dst: a("10.0.0.2")},
				TTL:   64, ICMPType: 3, ICMPCode: 3,
			},
		},
		{
			name: "ipv4 tcp syn-ack",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("1.2.3.4"), Daddr: addr16("10.0.0.5"), Family: 4, Proto: 6, Ttl: 50,
				TcpFlags: 0x12, Sport: be16(443), Dport: be16(40000), IpId: be16(1),
				TcpSeq: be32(0xdeadbeef),
				// Garbage in the ICMP fields is not reported for TCP.
				IcmpType: 9, IcmpSeq: 9,
			},
			want: trace.Headers{
				Tuple:    trace.Tuple{Proto: trace.ProtoTCP, Src: a("1.2.3.4"), Dst: a("10.0.0.5"), Sport: 443, Dport: 40000},
				IPID:     1,
				TTL:      50,
				TCPFlags: trace.TCPFlags(0x12),
				TCPSeq:   0xdeadbeef,
			},
		},
		{
			name: "ipv4 udp",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("10.0.0.5"), Daddr: addr16("1.1.1.1"), Family: 4, Proto: 17, Ttl: 64,
				Sport: be16(5353), Dport: be16(53), IpId: be16(0x4000),
				// Garbage in the TCP fields is not reported for UDP.
				TcpFlags: 0xff, TcpSeq: 0x01020304,
			},
			want: trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: a("10.0.0.5"), Dst: a("1.1.1.1"), Sport: 5353, Dport: 53},
				IPID:  0x4000, TTL: 64,
			},
		},
		{
			name: "ipv4 other protocol",
			pkt:  bpf.PathtracePacket{Saddr: addr16("10.0.0.5"), Daddr: addr16("10.0.0.6"), Family: 4, Proto: 47, Ttl: 3},
			want: trace.Headers{Tuple: trace.Tuple{Proto: 47, Src: a("10.0.0.5"), Dst: a("10.0.0.6")}, TTL: 3},
		},
		{
			name: "ipv6 tcp",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("2001:db8::1"), Daddr: addr16("2001:db8::2"), Family: 6, Proto: 6, Ttl: 64,
				TcpFlags: 0x02, Sport: be16(50000), Dport: be16(22), TcpSeq: be32(1),
			},
			want: trace.Headers{
				Tuple:    trace.Tuple{Proto: trace.ProtoTCP, Src: a("2001:db8::1"), Dst: a("2001:db8::2"), Sport: 50000, Dport: 22},
				TTL:      64,
				TCPFlags: trace.TCPFlags(0x02),
				TCPSeq:   1,
			},
		},
		{
			name: "ipv6 icmpv6 echo",
			pkt: bpf.PathtracePacket{
				Saddr: addr16("fe80::1"), Daddr: addr16("ff02::1"), Family: 6, Proto: 58, Ttl: 255,
				IcmpType: 128, Sport: be16(0xabcd), Dport: be16(0xabcd), IcmpSeq: be16(3),
			},
			want: trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoICMPv6, Src: a("fe80::1"), Dst: a("ff02::1"), Sport: 0xabcd, Dport: 0xabcd},
				TTL:   255, ICMPType: 128, ICMPID: 0xabcd, ICMPSeq: 3,
			},
		},
		{
			// A v4-mapped address in an IPv6 packet stays IPv6: it is what was on the wire.
			name: "ipv6 with v4-mapped address",
			pkt:  bpf.PathtracePacket{Saddr: addr16("::ffff:10.0.0.1"), Daddr: addr16("::1"), Family: 6, Proto: 17},
			want: trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: a("::ffff:10.0.0.1"), Dst: a("::1")}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := headers(&c.pkt)
			if !ok {
				t.Fatal("headers returned false")
			}
			if got != c.want {
				t.Errorf("headers mismatch (-want +got):\n%s", cmp.Diff(c.want, got, addrEq))
			}
			if c.pkt.Family == 4 && (!got.Src.Is4() || !got.Dst.Is4()) {
				t.Errorf("IPv4 packet gave non-IPv4 addresses %v, %v", got.Src, got.Dst)
			}
		})
	}
}

func TestHeadersNoFamily(t *testing.T) {
	for _, fam := range []uint8{0, 1, 5, 10, 255} {
		pkt := bpf.PathtracePacket{Saddr: addr16("10.0.0.1"), Daddr: addr16("10.0.0.2"), Family: fam, Proto: 6, Sport: 1}
		if h, ok := headers(&pkt); ok {
			t.Errorf("family %d: headers = %+v, true; want false", fam, h)
		}
	}
}

const testKallsyms = `ffffffff81000000 T _text
ffffffff81a00000 T kfree_skb_reason
ffffffff81b00000 t udp_queue_rcv_one_skb
ffffffff81c00000 T __udp4_lib_rcv
ffffffff81d00000 T consume_skb
`

// readySymbols is a table already read.
func readySymbols(t *ksym.Table) *symbols {
	s := &symbols{done: make(chan struct{}), table: t}
	close(s.done)
	return s
}

// testTracer is a Tracer with just what convert needs: no kernel, no BPF.
func testTracer(t testing.TB, reasons dropreason.Names) *Tracer {
	t.Helper()
	r, err := netns.NewNamer([]string{"/proc/self/ns/net"})
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ksym.Parse(strings.NewReader(testKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	return &Tracer{reasons: reasons, netns: r, startNS: 1_000_000, syms: readySymbols(syms)}
}

func hostIno(t testing.TB) uint32 {
	t.Helper()
	ino, err := netns.Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func TestConvertDrop(t *testing.T) {
	tr := testTracer(t, dropreason.Names{2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP"})
	host := hostIno(t)
	e := bpf.PathtraceEvent{
		Ts:       1_000_000 + 1500,
		Skb:      0xffff888012345600,
		Location: 0xffffffff81c00123,
		Kind:     bpf.PathtraceEventKindEV_DROP,
		Cpu:      3,
		Netns:    host,
		Ifindex:  1,
		Len:      84,
		Reason:   3,
		Ifname:   cName("lo"),
		Pkt: bpf.PathtracePacket{
			Saddr: addr16("127.0.0.1"), Daddr: addr16("127.0.0.1"), Family: 4, Proto: 17, Ttl: 64,
			Sport: be16(40000), Dport: be16(9),
		},
	}
	ev, ok := tr.convert(&e)
	if !ok {
		t.Fatal("convert returned false")
	}
	want := trace.Event{
		SKB: 0xffff888012345600,
		CPU: 3,
		Hop: trace.Hop{
			TimeNS: 1500,
			Event:  trace.KindDrop,
			Probe:  "skb:kfree_skb",
			Place:  trace.Place{Netns: host, NetnsName: "host", Ifindex: 1, Ifname: "lo"},
			Len:    84,
			Tuple: &trace.Headers{
				Tuple: trace.Tuple{Proto: trace.ProtoUDP, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), Sport: 40000, Dport: 9},
				TTL:   64,
			},
			Reason:     "NO_SOCKET",
			ReasonCode: 3,
			Location:   "__udp4_lib_rcv+0x123",
		},
	}
	if diff := cmp.Diff(want, ev, addrEq); diff != "" {
		t.Errorf("convert drop (-want +got):\n%s", diff)
	}
}

func TestConvertDropReasons(t *testing.T) {
	e := bpf.PathtraceEvent{Kind: bpf.PathtraceEventKindEV_DROP, Reason: 999, Location: 0xffffffff81a00010}

	ev, ok := testTracer(t, dropreason.Names{2: "NOT_SPECIFIED"}).convert(&e)
	if !ok {
		t.Fatal("convert returned false")
	}
	if ev.Hop.Reason != "reason-999" || ev.Hop.ReasonCode != 999 {
		t.Errorf("unknown reason: Reason %q code %d, want reason-999 999", ev.Hop.Reason, ev.Hop.ReasonCode)
	}
	if ev.Hop.Location != "kfree_skb_reason+0x10" {
		t.Errorf("Location = %q", ev.Hop.Location)
	}

	// A kernel without drop reasons (nil Names): the location only.
	ev, ok = testTracer(t, nil).convert(&e)
	if !ok {
		t.Fatal("convert returned false")
	}
	if ev.Hop.Reason != "" || ev.Hop.ReasonCode != 0 {
		t.Errorf("no reasons: Reason %q code %d, want none", ev.Hop.Reason, ev.Hop.ReasonCode)
	}
	if ev.Hop.Location != "kfree_skb_reason+0x10" {
		t.Errorf("Location = %q", ev.Hop.Location)
	}
}

func TestConvertHopKinds(t *testing.T) {
	tr := testTracer(t, dropreason.Names{3: "NO_SOCKET"})
	cases := []struct {
		kind  bpf.PathtraceEventKind
		want  trace.Kind
		probe string
	}{
		{bpf.PathtraceEventKindEV_RECEIVE, trace.KindReceive, "net:netif_receive_skb"},
		{bpf.PathtraceEventKindEV_QUEUE, trace.KindQueue, "net:net_dev_queue"},
		{bpf.PathtraceEventKindEV_XMIT, trace.KindXmit, "net:net_dev_start_xmit"},
		{bpf.PathtraceEventKindEV_CONSUME, trace.KindConsume, "skb:consume_skb"},
	}
	for _, c := range cases {
		e := bpf.PathtraceEvent{
			Kind: c.kind, Ts: 1_000_000 + 7, Netns: hostIno(t), Ifindex: 4, Ifname: cName("veth-abcdefghijk"),
			Location: 0xffffffff81d00004, Reason: 3,
			Pkt: bpf.PathtracePacket{Saddr: addr16("10.0.0.1"), Daddr: addr16("10.0.0.2"), Family: 4, Proto: 1},
		}
		ev, ok := tr.convert(&e)
		if !ok {
			t.Fatalf("kind %d: convert returned false", c.kind)
		}
		h := ev.Hop
		if h.Event != c.want || h.Probe != c.probe {
			t.Errorf("kind %d: %s %s, want %s %s", c.kind, h.Event, h.Probe, c.want, c.probe)
		}
		// A full 16-byte name has no NUL: it must not run past the array.
		if h.Ifname != "veth-abcdefghijk" || h.Ifindex != 4 {
			t.Errorf("kind %d: if %q/%d", c.kind, h.Ifname, h.Ifindex)
		}
		if h.Tuple == nil || h.Tuple.Dst != netip.MustParseAddr("10.0.0.2") {
			t.Errorf("kind %d: tuple %+v", c.kind, h.Tuple)
		}
		if h.Reason != "" || h.ReasonCode != 0 || h.Route != nil {
			t.Errorf("kind %d: reason %q/%d route %v on a non-drop hop", c.kind, h.Reason, h.ReasonCode, h.Route)
		}
		wantLoc := ""
		if c.kind == bpf.PathtraceEventKindEV_CONSUME {
			wantLoc = "consume_skb+0x4"
		}
		if h.Location != wantLoc {
			t.Errorf("kind %d: Location %q, want %q", c.kind, h.Location, wantLoc)
		}
		if h.TimeNS != 7 {
			t.Errorf("kind %d: TimeNS %d, want 7", c.kind, h.TimeNS)
		}
	}
}

func TestConvertRoute(t *testing.T) {
	tr := testTracer(t, dropreason.Names{})
	e := bpf.PathtraceEvent{
		Ts:      1_000_000 + 42,
		Skb:     0, // a FIB lookup has no sk_buff
		Kind:    bpf.PathtraceEventKindEV_ROUTE,
		Cpu:     1,
		Netns:   hostIno(t),
		Ifindex: 9, // must not survive: a route hop is not on a device
		Ifname:  cName("eth9"),
		Pkt: bpf.PathtracePacket{
			Saddr: addr16("10.0.0.5"), Daddr: addr16("8.8.8.8"), Family: 4, Proto: 1,
		},
		Route: bpf.PathtraceRoute{
			Table: 254, Err: 0, OutIfindex: 2, Iif: 1,
			Gw: addr16("10.0.0.1"), GwFamily: 4, OutIfname: cName("eth0"),
		},
	}
	ev, ok := tr.convert(&e)
	if !ok {
		t.Fatal("convert returned false")
	}
	h := ev.Hop
	if h.Event != trace.KindRoute || h.Probe != "fib:fib_table_lookup" {
		t.Errorf("hop %s %s", h.Event, h.Probe)
	}
	if h.Tuple != nil {
		t.Errorf("route hop has a Tuple %+v; the flow belongs in Route.Lookup", h.Tuple)
	}
	if h.Ifindex != 0 {
		t.Errorf("route hop Ifindex = %d, want 0", h.Ifindex)
	}
	if h.NetnsName != "host" || h.TimeNS != 42 || ev.CPU != 1 {
		t.Errorf("netns %q time %d cpu %d", h.NetnsName, h.TimeNS, ev.CPU)
	}
	want := &trace.Route{
		Table:     254,
		TableName: "main",
		OutIfname: "eth0",
		OutIndex:  2,
		Gateway:   netip.MustParseAddr("10.0.0.1"),
		Lookup:    trace.Tuple{Proto: trace.ProtoICMP, Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("8.8.8.8")},
		Iif:       1,
	}
	if diff := cmp.Diff(want, h.Route, addrEq); diff != "" {
		t.Errorf("route (-want +got):\n%s", diff)
	}
	if h.Reason != "" || h.Location != "" {
		t.Errorf("route hop has reason %q location %q", h.Reason, h.Location)
	}
}

func TestConvertRouteVariants(t *testing.T) {
	tr := testTracer(t, nil)
	cases := []struct {
		name      string
		route     bpf.PathtraceRoute
		wantTable string
		wantGw    netip.Addr
		wantErr   int32
	}{
		{"local", bpf.PathtraceRoute{Table: 255, OutIfname: cName("lo"), OutIfindex: 1}, "local", netip.Addr{}, 0},
		{"default", bpf.PathtraceRoute{Table: 253}, "default", netip.Addr{}, 0},
		{"custom table", bpf.PathtraceRoute{Table: 100, Gw: addr16("192.168.0.1"), GwFamily: 4}, "", netip.MustParseAddr("192.168.0.1"), 0},
		{"v6 gateway", bpf.PathtraceRoute{Table: 254, Gw: addr16("fe80::1"), GwFamily: 6}, "main", netip.MustParseAddr("fe80::1"), 0},
		{"gw bytes without family", bpf.PathtraceRoute{Table: 254, Gw: addr16("10.9.9.9")}, "main", netip.Addr{}, 0},
		{"unreachable", bpf.PathtraceRoute{Table: 254, Err: -101}, "main", netip.Addr{}, -101},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := bpf.PathtraceEvent{Kind: bpf.PathtraceEventKindEV_ROUTE, Route: c.route}
			ev, ok := tr.convert(&e)
			if !ok {
				t.Fatal("convert returned false")
			}
			r := ev.Hop.Route
			if r == nil {
				t.Fatal("no Route")
			}
			if r.Table != c.route.Table || r.TableName != c.wantTable {
				t.Errorf("table %d %q, want %d %q", r.Table, r.TableName, c.route.Table, c.wantTable)
			}
			if r.Gateway != c.wantGw {
				t.Errorf("gateway %v, want %v", r.Gateway, c.wantGw)
			}
			if r.Err != c.wantErr {
				t.Errorf("err %d, want %d", r.Err, c.wantErr)
			}
			// No packet headers (family 0): an empty lookup, and still no Tuple.
			if ev.Hop.Tuple != nil || r.Lookup != (trace.Tuple{}) {
				t.Errorf("tuple %+v lookup %+v, want none", ev.Hop.Tuple, r.Lookup)
			}
			if ev.Hop.NetnsName != "" {
				t.Errorf("netns 0 named %q", ev.Hop.NetnsName)
			}
		})
	}
}

func TestConvertOther(t *testing.T) {
	tr := testTracer(t, nil)
	for _, k := range []bpf.PathtraceEventKind{0, 8, 1000} {
		e := bpf.PathtraceEvent{Kind: k}
		if ev, ok := tr.convert(&e); ok {
			t.Errorf("kind %d: convert = %+v, true; want false", k, ev)
		}
	}
	// A function hop of a function this build does not know is not made up.
	if ev, ok := tr.convert(&bpf.PathtraceEvent{Kind: bpf.PathtraceEventKindEV_FUNC}); ok {
		t.Errorf("function 0: convert = %+v, true; want false", ev)
	}

	// An event stamped before the trace started (clock skew between CPUs) is at time 0.
	e := bpf.PathtraceEvent{Kind: bpf.PathtraceEventKindEV_RECEIVE, Ts: 10, Netns: 12345}
	ev, ok := tr.convert(&e)
	if !ok {
		t.Fatal("convert returned false")
	}
	if ev.Hop.TimeNS != 0 {
		t.Errorf("TimeNS = %d, want 0", ev.Hop.TimeNS)
	}
	if ev.Hop.Tuple != nil {
		t.Errorf("family 0 gave a tuple %+v", ev.Hop.Tuple)
	}
	if ev.Hop.NetnsName != "netns:12345" {
		t.Errorf("unknown netns named %q", ev.Hop.NetnsName)
	}
}

func TestDecode(t *testing.T) {
	tr := testTracer(t, dropreason.Names{3: "NO_SOCKET"})
	e := bpf.PathtraceEvent{
		Ts: 1_000_000 + 5, Skb: 0xabc, Kind: bpf.PathtraceEventKindEV_DROP, Reason: 3, Netns: hostIno(t),
		Location: 0xffffffff81b00001, Ifname: cName("eth0"),
		Pkt: bpf.PathtracePacket{Saddr: addr16("10.0.0.1"), Daddr: addr16("10.0.0.2"), Family: 4, Proto: 6, TcpFlags: 0x04},
	}
	size := int(unsafe.Sizeof(e))
	raw := make([]byte, size+8) // a ring-buffer record may be padded
	copy(raw, unsafe.Slice((*byte)(unsafe.Pointer(&e)), size))

	var ev trace.Event
	ok := tr.decode(raw, &ev)
	if !ok {
		t.Fatal("decode returned false")
	}
	want, _ := tr.convert(&e)
	if diff := cmp.Diff(want, ev, addrEq); diff != "" {
		t.Errorf("decode differs from convert (-want +got):\n%s", diff)
	}
	if ev.Hop.Reason != "NO_SOCKET" || ev.Hop.Location != "udp_queue_rcv_one_skb+0x1" || ev.Hop.Tuple.TCPFlags != 0x04 {
		t.Errorf("decoded hop %+v", ev.Hop)
	}

	for _, n := range []int{0, 1, size - 1} {
		if tr.decode(raw[:n], new(trace.Event)) {
			t.Errorf("decode of %d bytes (< %d) succeeded", n, size)
		}
	}
}

func TestLocations(t *testing.T) {
	tr := testTracer(t, nil)
	e := bpf.PathtraceEvent{Kind: bpf.PathtraceEventKindEV_DROP, Location: 0xffffffff81a00020}
	ev, _ := tr.convert(&e)
	if ev.Hop.Location != "kfree_skb_reason+0x20" {
		t.Errorf("Location = %q", ev.Hop.Location)
	}
	// The same location again, and the same device, are the same strings, not new ones per
	// event.
	ev2, _ := tr.convert(&e)
	if unsafe.StringData(ev2.Hop.Location) != unsafe.StringData(ev.Hop.Location) {
		t.Error("a repeated location was symbolized again")
	}
	e.Ifname = cName("veth-pod")
	ev, _ = tr.convert(&e)
	ev2, _ = tr.convert(&e)
	if ev.Hop.Ifname != "veth-pod" || unsafe.StringData(ev2.Hop.Ifname) != unsafe.StringData(ev.Hop.Ifname) {
		t.Errorf("device %q made anew for each event", ev.Hop.Ifname)
	}

	// Without the kernel's symbols (kallsyms unreadable), addresses stay in hex, and Symbols
	// says why.
	tr.syms = loadSymbols(t.TempDir() + "/missing")
	tr.names = nameCache{}
	ev, _ = tr.convert(&e)
	if ev.Hop.Location != "0xffffffff81a00020" {
		t.Errorf("Location without symbols = %q", ev.Hop.Location)
	}
	if err := tr.Symbols(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Symbols() = %v, want the missing file's error", err)
	}
}

// clockPair's wall time maps onto the monotonic clock to within its own reads: a wall reading
// taken later between two monotonic reads lands between them, give or take the pair's spread.
func TestClockPair(t *testing.T) {
	mono, wall, within := clockPair()
	if within < 0 || within > time.Second {
		t.Fatalf("reads %v apart", within)
	}
	for range 100 {
		before := monotonicNow()
		w := time.Now()
		after := monotonicNow()
		at := int64(mono) + int64(w.Round(0).Sub(wall.Round(0))) // w's wall reading on the monotonic clock, by the pair
		slack := int64(within/2) + 1
		if at < int64(before)-slack || at > int64(after)+slack {
			t.Fatalf("wall %v maps to %d, outside the monotonic reads %d..%d (slack %d)", w, at, before, after, slack)
		}
	}
}
