package tracer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/pathtrace/pathtrace/analysis/assemble"
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/internal/run/emit"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/dropreason"
	"github.com/pathtrace/pathtrace/tracer/ksym"
)

// floodRecords are the ring-buffer records of one UDP datagram forwarded pod -> node -> ext,
// as the bench's matching config produces them: queued and sent in the pod, received, routed,
// queued and sent on the node, received and consumed in ext (namespaces unnamed there, as a
// pod's often are; the node's is the host's).
func floodRecords(t testing.TB) [][]byte {
	host := hostIno(t)
	pkt := bpf.PathtracePacket{
		Saddr: addr16("10.60.1.2"), Daddr: addr16("10.60.2.2"), Family: 4, Proto: 17, Ttl: 64,
		Sport: be16(40000), Dport: be16(5201), IpId: be16(77), Payload: 64,
	}
	fwd := pkt
	fwd.Ttl = 63
	const pod, ext = 4026532177, 4026532300
	evs := []bpf.PathtraceEvent{
		{Kind: bpf.PathtraceEventKindEV_QUEUE, Netns: pod, Ifindex: 2, Ifname: cName("eth0"), Pkt: pkt, First: 1},
		{Kind: bpf.PathtraceEventKindEV_XMIT, Netns: pod, Ifindex: 2, Ifname: cName("eth0"), Pkt: pkt},
		{Kind: bpf.PathtraceEventKindEV_RECEIVE, Netns: host, Ifindex: 7, Ifname: cName("veth-pod"), Pkt: pkt},
		{Kind: bpf.PathtraceEventKindEV_ROUTE, Netns: host, Pkt: pkt,
			Route: bpf.PathtraceRoute{Table: 254, OutIfindex: 8, Iif: 7, OutIfname: cName("veth-ext")}},
		{Kind: bpf.PathtraceEventKindEV_QUEUE, Netns: host, Ifindex: 8, Ifname: cName("veth-ext"), Pkt: fwd},
		{Kind: bpf.PathtraceEventKindEV_XMIT, Netns: host, Ifindex: 8, Ifname: cName("veth-ext"), Pkt: fwd},
		{Kind: bpf.PathtraceEventKindEV_RECEIVE, Netns: ext, Ifindex: 2, Ifname: cName("eth0"), Pkt: fwd},
		{Kind: bpf.PathtraceEventKindEV_CONSUME, Netns: ext, Ifindex: 2, Ifname: cName("eth0"), Pkt: fwd, Location: 0xffffffff81d00044},
	}
	size := int(unsafe.Sizeof(bpf.PathtraceEvent{}))
	var out [][]byte
	for i := range evs {
		e := &evs[i]
		e.Ts = 1_000_000 + uint64(i)*1000
		e.Len = 92
		if e.Kind != bpf.PathtraceEventKindEV_ROUTE {
			e.Skb = 0xffff888012345600
		}
		raw := make([]byte, size)
		copy(raw, unsafe.Slice((*byte)(unsafe.Pointer(e)), size))
		out = append(out, raw)
	}
	return out
}

// BenchmarkDecode measures turning ring-buffer records into events, the live path's first
// step (BenchmarkAssemble in internal/run measures the rest), in events per second.
func BenchmarkDecode(b *testing.B) {
	tr := testTracer(b, dropreason.Names{2: "NOT_SPECIFIED"})
	benchDecode(b, tr, floodRecords(b))
}

// benchDecode decodes recs over and over, reporting events per second and ns per event.
func benchDecode(b *testing.B, tr *Tracer, recs [][]byte) {
	b.ReportAllocs()
	n := 0
	var ev trace.Event
	for b.Loop() {
		for _, raw := range recs {
			if !tr.decode(raw, &ev) {
				b.Fatal("decode failed")
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// encoder turns recorded events back into ring-buffer records, the inverse of convert: drop
// locations get addresses in a symbol table made up of the functions the testutil.Recordings name.
type encoder struct {
	funcs   map[string]uint64 // function -> its made-up address
	reasons dropreason.Names  // as the recording's kernel named them
}

func (c *encoder) location(loc string) uint64 {
	if loc == "" {
		return 0
	}
	fn, off, _ := strings.Cut(loc, "+0x")
	o, _ := strconv.ParseUint(off, 16, 64)
	base, ok := c.funcs[fn]
	if !ok {
		base = 0xffffffff81000000 + uint64(len(c.funcs)+1)<<20
		c.funcs[fn] = base
	}
	return base + o
}

// kallsyms is the made-up symbol table, in /proc/kallsyms form.
func (c *encoder) kallsyms() string {
	var b strings.Builder
	for fn, addr := range c.funcs {
		fmt.Fprintf(&b, "%016x t %s\n", addr, fn)
	}
	return b.String()
}

func packetOf(h *trace.Headers) bpf.PathtracePacket {
	p := bpf.PathtracePacket{
		Saddr: h.Src.As16(), Daddr: h.Dst.As16(), Family: 6, Proto: uint8(h.Proto), Ttl: h.TTL,
		Sport: htons(h.Sport), Dport: htons(h.Dport), IpId: htons(h.IPID), Payload: h.Payload,
		TcpFlags: uint8(h.TCPFlags), TcpSeq: be32(h.TCPSeq),
		IcmpType: h.ICMPType, IcmpCode: h.ICMPCode, IcmpSeq: htons(h.ICMPSeq),
	}
	if h.Src.Is4() {
		p.Family = 4
		a, d := h.Src.As4(), h.Dst.As4()
		p.Saddr, p.Daddr = [16]uint8{}, [16]uint8{}
		copy(p.Saddr[:], a[:])
		copy(p.Daddr[:], d[:])
	}
	if h.Proto == trace.ProtoICMP || h.Proto == trace.ProtoICMPv6 {
		p.Sport = htons(h.ICMPID)
	}
	return p
}

func (c *encoder) record(t testing.TB, ev trace.Event, startNS uint64) bpf.PathtraceEvent {
	h := ev.Hop
	kinds := map[trace.Kind]bpf.PathtraceEventKind{
		trace.KindReceive: bpf.PathtraceEventKindEV_RECEIVE, trace.KindQueue: bpf.PathtraceEventKindEV_QUEUE,
		trace.KindXmit: bpf.PathtraceEventKindEV_XMIT, trace.KindRoute: bpf.PathtraceEventKindEV_ROUTE,
		trace.KindDrop: bpf.PathtraceEventKindEV_DROP, trace.KindConsume: bpf.PathtraceEventKindEV_CONSUME,
	}
	kind, ok := kinds[h.Event]
	if !ok {
		t.Fatalf("no record for a %s hop", h.Event)
	}
	e := bpf.PathtraceEvent{
		Ts: startNS + h.TimeNS, Skb: ev.SKB, Cpu: ev.CPU, Kind: kind, Netns: h.Netns, Ifindex: h.Ifindex,
		Len: h.Len, Reason: h.ReasonCode, Ifname: cName(h.Ifname), Location: c.location(h.Location),
	}
	if h.Reason != "" {
		c.reasons[h.ReasonCode] = h.Reason
	}
	if ev.First {
		e.First = 1
	}
	if ev.Gap {
		e.Gap = 1
	}
	if h.Tuple != nil {
		e.Pkt = packetOf(h.Tuple)
	}
	if h.Encap != "" {
		for k, name := range encapNames {
			if name == h.Encap {
				e.Encap = bpf.PathtraceEncapKind(k)
			}
		}
		e.Pkt, e.Inner = packetOf(h.Outer), packetOf(h.Tuple)
	}
	if r := h.Route; r != nil {
		e.Route = bpf.PathtraceRoute{Table: r.Table, Err: r.Err, OutIfindex: r.OutIndex, Iif: r.Iif, OutIfname: cName(r.OutIfname)}
		if r.Gateway.IsValid() {
			e.Route.GwFamily = 6
			e.Route.Gw = r.Gateway.As16()
			if r.Gateway.Is4() {
				a := r.Gateway.As4()
				e.Route.GwFamily, e.Route.Gw = 4, [16]uint8{}
				copy(e.Route.Gw[:], a[:])
			}
		}
		if r.Lookup.Src.IsValid() || r.Lookup.Dst.IsValid() {
			e.Pkt = packetOf(&trace.Headers{Tuple: r.Lookup})
		}
	}
	return e
}

// BenchmarkDecodeAssemble measures the live path's userspace work per event up to assembly,
// in events per second: a ring-buffer record decoded (netns and device named, drop location
// symbolized) and assembled. The records are the testutil.Recordings of
// testdata/events/recorded turned back into records; as BenchmarkAssemble/stream does, one
// long-lived assembler per recording is fed repetition after repetition, times (and TCP
// sequence numbers) moved on.
func BenchmarkDecodeAssemble(b *testing.B) {
	benchRecords(b, func([]trace.Packet) {})
}

// BenchmarkLive measures what a live run does per event, in events per second: the records
// of BenchmarkDecodeAssemble decoded and assembled, and each completed packet handled as
// run.Run handles it, by the same emit.Packets: counted in its flow, diagnosed, encoded for the
// trace file (into a buffer written to io.Discard, as the run's into its spill file) and its
// text block written (to io.Discard). Every packet is kept and printed: the run's worst case,
// the first --max-packets (10000) packets of a busy flow.
func BenchmarkLive(b *testing.B) {
	pk := &emit.Packets{
		Flows:   assemble.NewSummarizer(trace.Filter{}), // the assembler classified every packet
		Diag:    diagnose.New(nil),
		Kept:    emit.NewKept(bufio.NewWriterSize(io.Discard, 256<<10), math.MaxInt),
		Printer: text.NewPrinter(io.Discard, text.Options{}),
	}
	benchRecords(b, func(done []trace.Packet) { pk.Take(done) })
	if pk.Kept.Err() != nil || pk.Printer.Err() != nil {
		b.Fatal(pk.Kept.Err(), pk.Printer.Err())
	}
}

// benchRecords decodes and assembles the testutil.Recordings as ring-buffer records, repetition
// after repetition, handing each batch of completed packets to done, and reports events/s.
func benchRecords(b *testing.B, done func([]trace.Packet)) {
	const startNS = 1_000_000
	c := &encoder{funcs: map[string]uint64{}, reasons: dropreason.Names{}}
	type rec struct {
		filter trace.Filter
		raws   [][]byte
		spanNS uint64
	}
	var recs []rec
	size := int(unsafe.Sizeof(bpf.PathtraceEvent{}))
	total := 0
	for _, r := range testutil.Recordings {
		evs, err := assemble.LoadEvents(filepath.Join("../testdata/events/recorded", r.File+".jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		f, err := trace.NewFilter(netip.PrefixFrom(netip.MustParseAddr(r.Src), 32), netip.PrefixFrom(netip.MustParseAddr(r.Dst), 32), r.Proto, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		x := rec{filter: f}
		var lo, hi uint64 = ^uint64(0), 0
		for _, ev := range evs {
			e := c.record(b, ev, startNS)
			raw := make([]byte, size)
			copy(raw, unsafe.Slice((*byte)(unsafe.Pointer(&e)), size))
			x.raws = append(x.raws, raw)
			lo, hi = min(lo, ev.Hop.TimeNS), max(hi, ev.Hop.TimeNS)
		}
		x.spanNS = hi - lo + uint64(3*time.Second)
		recs = append(recs, x)
		total += len(evs)
	}
	syms, err := ksym.Parse(strings.NewReader(c.kallsyms()))
	if err != nil {
		b.Fatal(err)
	}
	tr := testTracer(b, c.reasons)
	tr.syms = readySymbols(syms)
	asms := make([]*assemble.Assembler, len(recs))
	for i, r := range recs {
		asms[i] = assemble.New(r.filter, assemble.Options{})
	}
	tsOff := int(unsafe.Offsetof(bpf.PathtraceEvent{}.Ts))
	seqOffs := []int{
		int(unsafe.Offsetof(bpf.PathtraceEvent{}.Pkt) + unsafe.Offsetof(bpf.PathtracePacket{}.TcpSeq)),
		int(unsafe.Offsetof(bpf.PathtraceEvent{}.Inner) + unsafe.Offsetof(bpf.PathtracePacket{}.TcpSeq)),
	}
	protoOffs := []int{
		int(unsafe.Offsetof(bpf.PathtraceEvent{}.Pkt) + unsafe.Offsetof(bpf.PathtracePacket{}.Proto)),
		int(unsafe.Offsetof(bpf.PathtraceEvent{}.Inner) + unsafe.Offsetof(bpf.PathtracePacket{}.Proto)),
	}
	// Where each record has a TCP sequence number to move on, found once: the loop below is
	// measured, and should cost as little beside decoding and what follows as it can.
	tcpSeqs := make([][][]int, len(recs))
	for i, r := range recs {
		tcpSeqs[i] = make([][]int, len(r.raws))
		for k, raw := range r.raws {
			for j, off := range seqOffs {
				if raw[protoOffs[j]] == uint8(trace.ProtoTCP) {
					tcpSeqs[i][k] = append(tcpSeqs[i][k], off)
				}
			}
		}
	}
	ne := binary.NativeEndian
	b.ReportAllocs()
	packets := 0
	rep := 0
	var asm *assemble.Assembler
	var ev trace.Event
	hand := func(ps []trace.Packet) {
		packets += len(ps)
		if len(ps) > 0 {
			done(ps)
			asm.Recycle(ps) // as run.Run does
		}
	}
	for b.Loop() {
		for i, r := range recs {
			asm = asms[i]
			for k, raw := range r.raws {
				// The next repetition: later by a span; a TCP segment a new one, not a
				// retransmission of the last repetition's.
				ne.PutUint64(raw[tsOff:], ne.Uint64(raw[tsOff:])+r.spanNS)
				for _, off := range tcpSeqs[i][k] {
					seq := binary.BigEndian.Uint32(raw[off:]) + 1_000_003 // in the wire's order
					binary.BigEndian.PutUint32(raw[off:], seq)
				}
				if !tr.decode(raw, &ev) {
					b.Fatal("a record did not decode")
				}
				hand(asm.Add(ev))
			}
			hand(asm.Expire(uint64(rep+2)*r.spanNS + startNS))
		}
		rep++
	}
	if packets == 0 {
		b.Fatal("no packets")
	}
	n := b.N * total
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// The records BenchmarkDecodeAssemble decodes are the testutil.Recordings: decoded, each is the event
// recorded (but for the namespaces' names, which belong to the machine that recorded them).
func TestRecordsDecodeToRecordings(t *testing.T) {
	c := &encoder{funcs: map[string]uint64{}, reasons: dropreason.Names{}}
	type rec struct {
		evs  []trace.Event
		raws [][]byte
	}
	var recs []rec
	for _, r := range testutil.Recordings {
		evs, err := assemble.LoadEvents(filepath.Join("../testdata/events/recorded", r.File+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		x := rec{evs: evs}
		for _, ev := range evs {
			e := c.record(t, ev, 1_000_000)
			x.raws = append(x.raws, append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))...))
		}
		recs = append(recs, x)
	}
	syms, err := ksym.Parse(strings.NewReader(c.kallsyms()))
	if err != nil {
		t.Fatal(err)
	}
	tr := testTracer(t, c.reasons)
	tr.syms = readySymbols(syms)
	n := 0
	for i, r := range recs {
		for j, raw := range r.raws {
			var got trace.Event
			if !tr.decode(raw, &got) {
				t.Fatalf("%s event %d: not decoded", testutil.Recordings[i].File, j)
			}
			n++
			want := r.evs[j]
			got.Hop.NetnsName = want.Hop.NetnsName
			if d := cmp.Diff(want, got, addrEq); d != "" {
				t.Errorf("%s event %d (-recorded +decoded):\n%s", testutil.Recordings[i].File, j, d)
			}
		}
	}
	if n < 300 {
		t.Errorf("%d events checked, want the testutil.Recordings' (over 300)", n)
	}
}
