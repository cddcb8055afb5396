package tracer

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/dropreason"
)

// FuzzDecode: decode takes whatever the ring buffer hands it (a record is the C struct event,
// but a short or garbled one must not bring the tracer down). It never panics, it rejects only
// records too short or of an unknown kind, and what it accepts is a hop of a known kind whose
// parts fit together. Seeds are in testdata/fuzz/FuzzDecode: encoded events of every kind, with
// and without encapsulation, and truncated ones. Those are in this machine's byte order and
// the layout of the day they were written, so one event is also encoded here, with the layout
// bpf2go generates now.
func FuzzDecode(f *testing.F) {
	tr := testTracer(f, dropreason.Names{2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP"})
	size := int(unsafe.Sizeof(bpf.PathtraceEvent{}))
	kindOff := int(unsafe.Offsetof(bpf.PathtraceEvent{}.Kind))
	seed := bpf.PathtraceEvent{
		Ts: 1_000_000 + 1500, Skb: 0xffff888012345600, Location: 0xffffffff81c00123,
		Kind: bpf.PathtraceEventKindEV_DROP, Cpu: 1, Netns: 4026531840, Ifindex: 2, Len: 98, Reason: 12,
		Ifname: cName("veth-pod"), Encap: bpf.PathtraceEncapKindENCAP_IPIP, First: 1,
		Pkt: bpf.PathtracePacket{Saddr: addr16("192.168.1.10"), Daddr: addr16("192.168.1.11"), Family: 4, Proto: 4, Ttl: 64},
		Inner: bpf.PathtracePacket{Saddr: addr16("2001:db8::1"), Daddr: addr16("2001:db8::2"), Family: 6, Proto: 6,
			Sport: be16(43210), Dport: be16(443), TcpFlags: 0x12, TcpSeq: be32(1)},
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &seed); err != nil || buf.Len() != size {
		f.Fatalf("encoding an event: %d bytes, %v; want %d bytes", buf.Len(), err, size)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev trace.Event
		ok := tr.decode(raw, &ev)
		if len(raw) < size {
			if ok {
				t.Fatalf("decode accepted a %d-byte record, shorter than an event (%d)", len(raw), size)
			}
			return
		}
		kind := bpf.PathtraceEventKind(binary.NativeEndian.Uint32(raw[kindOff:]))
		known := int(kind) < len(probeNames) && probeNames[kind].kind != ""
		if kind == bpf.PathtraceEventKindEV_FUNC {
			// A function hop of a function this build does not know is not made up.
			var e bpf.PathtraceEvent
			_ = binary.Read(bytes.NewReader(raw[:size]), binary.NativeEndian, &e)
			_, known = funcNames[e.Fn.Id]
		}
		if ok != known {
			t.Fatalf("decode of a full record of kind %d: ok = %v, want %v", kind, ok, known)
		}
		if !ok {
			return
		}
		h := ev.Hop
		if h.Event == "" || h.Probe == "" {
			t.Fatalf("hop without an event or probe: %+v", h)
		}
		if h.Event == trace.KindRoute {
			if h.Route == nil || h.Tuple != nil || h.Ifindex != 0 {
				t.Fatalf("route hop: Route %v, Tuple %v, Ifindex %d; want a route, no tuple, no ifindex", h.Route, h.Tuple, h.Ifindex)
			}
		} else if h.Route != nil {
			t.Fatalf("%s hop with a route: %+v", h.Event, h.Route)
		}
		if h.Encap != "" && (h.Outer == nil || h.Tuple == nil) {
			t.Fatalf("encapsulated (%s) hop without both headers: outer %v inner %v", h.Encap, h.Outer, h.Tuple)
		}
		if h.Outer != nil && h.Encap == "" {
			t.Fatalf("outer headers without an encapsulation: %+v", h.Outer)
		}
		if (h.Reason != "" || h.Location != "") && h.Event != trace.KindDrop && h.Event != trace.KindConsume {
			t.Fatalf("%s hop with a reason %q or location %q", h.Event, h.Reason, h.Location)
		}
	})
}
