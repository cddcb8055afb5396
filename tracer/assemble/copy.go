package assemble

import (
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// The kernel clones a packet for sockets that want their own copy of it: a raw socket gets
// every packet of its protocol (raw_local_deliver), a packet socket (tcpdump) every packet on
// its device, and the neighbour code clones a packet waiting for ARP to solicit with. A clone
// is a new sk_buff that passes no receive or transmit tracepoint: the one event it shows is
// its free, when its socket read it or threw it away. Such a lone free with the headers of a
// packet seen shortly before in the same netns is a copy of that packet and becomes a hop of
// it, not a packet of its own.
//
// The copy can change the original's fate: iputils' ping reads echo replies on a raw socket,
// so the reply itself is dropped by ping_rcv for want of a ping socket (NO_SOCKET) while the
// raw socket's clone is consumed by raw_recvmsg once ping reads it. A packet dropped with
// NO_SOCKET is therefore held back for copyWindowNS before it is handed out.

// copyWindowNS is how long after a packet was seen a lone free with its headers counts as a
// copy of it, and so how long a packet dropped with NO_SOCKET is held back.
const copyWindowNS = uint64(1_000_000_000)

// noSocket is the drop reason a copy delivered to another socket can overturn.
const noSocket = "NO_SOCKET"

// overturnable says whether a copy consumed by another socket can turn this drop into a
// delivery: NO_SOCKET, or on kernels without drop reasons (before 5.17) a reasonless drop where
// the protocol handlers look for their socket.
func overturnable(end *trace.Hop) bool {
	if end == nil || end.Event != trace.KindDrop {
		return false
	}
	if end.Reason == noSocket {
		return true
	}
	fn, _, _ := strings.Cut(end.Location, "+")
	return end.Reason == "" && (fn == "icmp_rcv" || fn == "ping_rcv" || fn == "__udp4_lib_rcv" || fn == "icmpv6_rcv")
}

// copyKey is what a copy shares with its original: the netns and the headers. The TTL is left
// out: the neighbour code clones a forwarded packet after ip_forward decremented it, before
// the original's next hop shows the new value.
type copyKey struct {
	netns uint32
	h     trace.Headers
}

func copyKeyOf(h *trace.Hop) copyKey {
	k := copyKey{netns: h.Netns, h: *h.Tuple}
	k.h.TTL = 0
	return k
}

// copyIndex finds, by netns and headers, the packets open or held that were seen with them
// lately.
type copyIndex struct {
	refs map[copyKey][]copyRef
	fifo []copyRec // every note in arrival order, to forget them
	head int
}

type copyRef struct {
	p  *packet
	ns uint64 // the latest time p was seen with the key
}

type copyRec struct {
	k  copyKey
	ns uint64
}

func newCopyIndex() copyIndex { return copyIndex{refs: make(map[copyKey][]copyRef)} }

// note records that p was seen with h's netns and headers.
func (x *copyIndex) note(p *packet, h *trace.Hop, limit int) {
	k := copyKeyOf(h)
	refs := x.refs[k]
	i := 0
	for i < len(refs) && refs[i].p != p {
		i++
	}
	if i == len(refs) {
		x.refs[k] = append(refs, copyRef{p, h.TimeNS})
	} else {
		refs[i].ns = max(refs[i].ns, h.TimeNS)
	}
	x.fifo = append(x.fifo, copyRec{k, h.TimeNS})
	for len(x.fifo)-x.head > limit {
		x.pop()
	}
}

// find returns the packet, open or held (or handed out too, with done), last seen with h's
// netns and headers, if that was within copyWindowNS before h (or a little after: events of
// other CPUs arrive out of order).
func (x *copyIndex) find(h *trace.Hop, done bool) *packet {
	var best *packet
	var bestNS uint64
	for _, r := range x.refs[copyKeyOf(h)] {
		if (r.p.state == stDone && !done) || r.ns+copyWindowNS < h.TimeNS || r.ns > h.TimeNS+reorderSlackNS {
			continue
		}
		// A copy freed on a device is not of a packet that last went out of another device of
		// that namespace: that one has left (a mirred clone on its monitor port, say).
		if !done && h.Ifindex != 0 && r.p.lastNetns == h.Netns && isTransmit(r.p.lastKind) && r.p.lastIfindex != h.Ifindex {
			continue
		}
		if best == nil || r.ns > bestNS {
			best, bestNS = r.p, r.ns
		}
	}
	return best
}

func (x *copyIndex) prune(nowNS uint64) {
	for x.head < len(x.fifo) && x.fifo[x.head].ns+copyWindowNS+reorderSlackNS < nowNS {
		x.pop()
	}
}

// pop forgets the oldest note, and with it the packets under its key not seen since or
// handed out.
func (x *copyIndex) pop() {
	r := x.fifo[x.head]
	x.fifo[x.head] = copyRec{}
	x.head++
	if x.head > len(x.fifo)/2 {
		x.fifo = append(x.fifo[:0], x.fifo[x.head:]...)
		x.head = 0
	}
	refs := x.refs[r.k]
	kept := refs[:0]
	for _, ref := range refs {
		if ref.ns > r.ns && ref.p.state != stDone {
			kept = append(kept, ref)
		}
	}
	clear(refs[len(kept):])
	if len(kept) == 0 {
		delete(x.refs, r.k)
	} else {
		x.refs[r.k] = kept
	}
}

// copyOf returns the packet a lone free is a copy of, nil if it is none's.
func (a *Assembler) copyOf(h *trace.Hop) *packet {
	if h.Tuple == nil || (h.Event != trace.KindDrop && h.Event != trace.KindConsume) {
		return nil
	}
	return a.copies.find(h, false)
}

// relate links a packet starting with hop h to the packet it copies or retransmits. A new
// sk_buff carrying headers just seen in the same netns is a clone that travels on (a bridge
// flooding a frame to every port, tc mirred); a TCP segment with data, SYN or FIN sent again
// is a retransmission.
func (a *Assembler) relate(p *packet, h *trace.Hop) {
	if h.Tuple == nil {
		return
	}
	if orig := a.copies.find(h, true); orig != nil && orig != p {
		p.copyOf = orig
		return
	}
	p.retransmitOf = a.segments.seen(p, h.Tuple)
}

// segmentIndex remembers the first packet that carried each TCP segment.
type segmentIndex map[segmentKey]*packet

type segmentKey struct {
	flow    trace.Tuple
	seq     uint32
	flags   trace.TCPFlags
	payload uint16
}

// segmentIndexCap bounds the index; past it, it starts over.
const segmentIndexCap = 1 << 16

// seen returns the packet that carried t's segment before p, or records p as its first.
func (x segmentIndex) seen(p *packet, t *trace.Headers) *packet {
	const syn, fin = 0x02, 0x01
	if t.Proto != trace.ProtoTCP || (t.Payload == 0 && t.TCPFlags&(syn|fin) == 0) {
		return nil
	}
	k := segmentKey{t.Tuple, t.TCPSeq, t.TCPFlags, t.Payload}
	if first, ok := x[k]; ok && first != p {
		return first
	}
	if len(x) >= segmentIndexCap {
		clear(x)
	}
	x[k] = p
	return nil
}

// capturedBy says whether a copy was freed by a packet socket: tcpdump capturing a packet is
// no delivery of it, so such a copy does not overturn a NO_SOCKET drop.
func capturedBy(location string) bool {
	fn, _, _ := strings.Cut(location, "+")
	switch fn {
	case "packet_rcv", "packet_rcv_spkt", "tpacket_rcv", "packet_recvmsg":
		return true
	}
	return false
}

// copyDelivered turns a NO_SOCKET drop into a delivery when a socket of the same netns
// consumed a copy of the packet: the protocol's own handler found no socket for it, but
// another socket had already been given its copy. hops are the packet's own, copies its
// copies' frees in time order.
func copyDelivered(f trace.Fate, hops []trace.Hop, end *trace.Hop, copies []trace.Hop) trace.Fate {
	if f.Outcome != trace.Dropped || !overturnable(end) {
		return f
	}
	for _, c := range copies {
		if c.Event != trace.KindConsume || c.Netns != end.Netns || capturedBy(c.Location) {
			continue
		}
		at := indexOf(hops, end)
		for i := at; i >= 0; i-- {
			if hops[i].Event == trace.KindReceive {
				at = i
				break
			}
		}
		h := hops[at]
		return trace.Fate{
			Outcome: trace.Delivered, Location: c.Location,
			Ifname: ifnameAt(hops, at), Netns: h.Netns, NetnsName: h.NetnsName,
		}
	}
	return f
}

// An early copy is a lone consume with no packet of its headers seen yet: the neighbour code
// clones a locally generated packet waiting for ARP and frees the clone (neigh_probe) before
// the original reaches its first transmit tracepoint. It waits copyWindowNS for its original;
// one that finds none becomes a packet of its own.
type earlyCopy struct {
	ev  trace.Event
	key copyKey
}

// keepEarly parks a lone consume that may be a copy of a packet not seen yet.
func (a *Assembler) keepEarly(ev trace.Event) bool {
	h := &ev.Hop
	if h.Event != trace.KindConsume || h.Tuple == nil || len(a.early) >= a.maxOpen {
		return false
	}
	a.early = append(a.early, earlyCopy{ev: ev, key: copyKeyOf(h)})
	return true
}

// claimEarly gives p the early copies of the headers it was just seen with.
func (a *Assembler) claimEarly(p *packet, h *trace.Hop) {
	if len(a.early) == 0 {
		return
	}
	k := copyKeyOf(h)
	kept := a.early[:0]
	for _, c := range a.early {
		ns := c.ev.Hop.TimeNS
		if c.key == k && ns <= h.TimeNS+reorderSlackNS && h.TimeNS <= ns+copyWindowNS {
			if p.pushCopy(c.ev.Hop, a.maxHops) {
				a.stats.HopsCut++
			}
			a.stats.Copies++
			continue
		}
		kept = append(kept, c)
	}
	clear(a.early[len(kept):])
	a.early = kept
}

// releaseEarly turns early copies whose wait is over (all of them when nowNS is max) into
// packets of their own.
func (a *Assembler) releaseEarly(nowNS uint64) []trace.Packet {
	var out []trace.Packet
	kept := a.early[:0]
	var due []trace.Event
	for _, c := range a.early {
		if nowNS == ^uint64(0) || c.ev.Hop.TimeNS+copyWindowNS < nowNS {
			due = append(due, c.ev)
			continue
		}
		kept = append(kept, c)
	}
	clear(a.early[len(kept):])
	a.early = kept
	for _, ev := range due {
		p := a.start(ev.SKB)
		a.push(p, ev)
		h := ev.Hop
		out = append(out, a.complete(p, &h)...)
	}
	return out
}
