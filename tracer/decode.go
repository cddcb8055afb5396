package tracer

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/dropreason"
)

var probeNames = [...]struct {
	kind  trace.Kind
	probe string
}{
	bpf.PathtraceEventKindEV_RECEIVE: {trace.KindReceive, "net:netif_receive_skb"},
	bpf.PathtraceEventKindEV_QUEUE:   {trace.KindQueue, "net:net_dev_queue"},
	bpf.PathtraceEventKindEV_XMIT:    {trace.KindXmit, "net:net_dev_start_xmit"},
	bpf.PathtraceEventKindEV_ROUTE:   {trace.KindRoute, "fib:fib_table_lookup"},
	bpf.PathtraceEventKindEV_DROP:    {trace.KindDrop, "skb:kfree_skb"},
	bpf.PathtraceEventKindEV_CONSUME: {trace.KindConsume, "skb:consume_skb"},
	bpf.PathtraceEventKindEV_FUNC:    {trace.KindFunc, ""},
}

func (t *Tracer) symbolize(addr uint64) string { return t.names.location(addr, t.syms) }

// decode turns one ring-buffer record into ev and says whether it is one. The record is the C
// struct event, laid out exactly as bpf2go's PathtraceEvent. The event is written in place: it
// is a large struct, and every record of a busy flow is decoded.
func (t *Tracer) decode(raw []byte, ev *trace.Event) bool {
	if len(raw) < int(unsafe.Sizeof(bpf.PathtraceEvent{})) {
		return false
	}
	if !t.convertInto((*bpf.PathtraceEvent)(unsafe.Pointer(&raw[0])), ev) {
		return false
	}
	if len(raw) > eventSize {
		ev.Hop.Bytes = snapBytes(raw) // --pcapng
	}
	return true
}

func (t *Tracer) convert(e *bpf.PathtraceEvent) (trace.Event, bool) {
	var ev trace.Event
	ok := t.convertInto(e, &ev)
	return ev, ok
}

func (t *Tracer) convertInto(e *bpf.PathtraceEvent, ev *trace.Event) bool {
	if int(e.Kind) >= len(probeNames) || probeNames[e.Kind].kind == "" {
		return false
	}
	kind := probeNames[e.Kind]
	*ev = trace.Event{SKB: e.Skb, CPU: e.Cpu, First: e.First != 0, Gap: e.Gap != 0, Hop: trace.Hop{
		Event: kind.kind,
		Probe: kind.probe,
		Place: trace.Place{
			Netns:     e.Netns,
			NetnsName: t.names.netnsName(e.Netns, e.Ts, t.netns),
			Ifindex:   e.Ifindex,
			Ifname:    t.names.ifname(&e.Ifname),
		},
		Len: e.Len,
	}}
	h := &ev.Hop
	if e.Ts > t.startNS {
		h.TimeNS = e.Ts - t.startNS
	}
	hdr, hasHeaders := headers(&e.Pkt)
	if hasHeaders && e.Kind != bpf.PathtraceEventKindEV_ROUTE {
		h.Tuple = t.names.headers(e.Cpu, &hdr)
		if name := encapName(e.Encap); name != "" {
			if in, ok := headers(&e.Inner); ok {
				h.Encap, h.Outer, h.Tuple = name, h.Tuple, &in
				h.VNI = e.Vni
			}
		}
	}
	switch e.Kind {
	case bpf.PathtraceEventKindEV_DROP:
		if e.Fn.Id != 0 {
			// Dropped inside nf_hook_slow: which hook, from its entry.
			h.Func, _, _ = t.funcCall(&e.Fn)
		}
		h.Location = t.symbolize(e.Location)
		if t.reasons != nil {
			h.Reason = t.reasons.Name(e.Reason)
			h.ReasonCode = e.Reason
		} else if r, ok := dropreason.Infer(h.Location); ok {
			h.Reason, h.ReasonInferred = r, true
		}
	case bpf.PathtraceEventKindEV_CONSUME:
		h.Location = t.symbolize(e.Location)
	case bpf.PathtraceEventKindEV_FUNC:
		var ok bool
		if h.Func, h.Probe, ok = t.funcCall(&e.Fn); !ok {
			*ev = trace.Event{}
			return false
		}
	case bpf.PathtraceEventKindEV_ROUTE:
		r := trace.Route{
			Table:     e.Route.Table,
			TableName: tableName(e.Route.Table),
			Err:       e.Route.Err,
			OutIndex:  e.Route.OutIfindex,
			OutIfname: t.names.ifname(&e.Route.OutIfname),
			Iif:       e.Route.Iif,
		}
		if hasHeaders {
			r.Lookup = hdr.Tuple
			if encapName(e.Encap) != "" {
				if in, ok := headers(&e.Inner); ok {
					r.Lookup = in.Tuple // as for other hops, the carried packet's
				}
			}
		}
		switch e.Route.GwFamily {
		case 4:
			r.Gateway = netip.AddrFrom4([4]byte(e.Route.Gw[:4]))
		case 6:
			r.Gateway = netip.AddrFrom16(e.Route.Gw)
		}
		h.Route = t.names.route(&r)
		h.Tuple, h.Encap, h.VNI, h.Outer = nil, "", 0, nil
		h.Ifindex = 0
	}
	return true
}

var encapNames = [...]string{
	bpf.PathtraceEncapKindENCAP_VXLAN:  "vxlan",
	bpf.PathtraceEncapKindENCAP_GENEVE: "geneve",
	bpf.PathtraceEncapKindENCAP_IPIP:   "ipip",
}

// encapName names an encapsulation, "" for none (or one this build does not know).
func encapName(k bpf.PathtraceEncapKind) string {
	if int(k) < len(encapNames) {
		return encapNames[k]
	}
	return ""
}

func int8sToBytes(s []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}

func tableName(id uint32) string {
	switch id {
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return ""
}

func headers(p *bpf.PathtracePacket) (trace.Headers, bool) {
	var h trace.Headers
	switch p.Family {
	case 4:
		h.Src = netip.AddrFrom4([4]byte(p.Saddr[:4]))
		h.Dst = netip.AddrFrom4([4]byte(p.Daddr[:4]))
	case 6:
		h.Src = netip.AddrFrom16(p.Saddr)
		h.Dst = netip.AddrFrom16(p.Daddr)
	default:
		return h, false
	}
	h.Proto = trace.Proto(p.Proto)
	h.Sport = htons(p.Sport)
	h.Dport = htons(p.Dport)
	h.IPID = htons(p.IpId)
	h.TTL = p.Ttl
	h.Payload = p.Payload
	switch h.Proto {
	case trace.ProtoTCP:
		h.TCPFlags = trace.TCPFlags(p.TcpFlags)
		h.TCPSeq = p.TcpSeq>>24 | (p.TcpSeq>>8)&0xff00 | (p.TcpSeq<<8)&0xff0000 | p.TcpSeq<<24
	case trace.ProtoICMP, trace.ProtoICMPv6:
		h.ICMPType = p.IcmpType
		h.ICMPCode = p.IcmpCode
		h.ICMPID = h.Sport
		h.ICMPSeq = htons(p.IcmpSeq)
	}
	return h, true
}
