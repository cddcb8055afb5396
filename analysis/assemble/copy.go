package assemble

import (
	"encoding/binary"
	"hash/maphash"
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
// the original's next hop shows the new value. It is a compact form of the netns and
// trace.Headers (addresses as 16 bytes), as one is hashed and stored for each packet noted.
type copyKey struct {
	netns                                        uint32
	src, dst                                     [16]byte
	tcpSeq                                       uint32
	sport, dport, ipID, icmpID, icmpSeq, payload uint16
	family, proto, tcpFlags, icmpType, icmpCode  uint8
}

// hash is k's hash with seed. (maphash.Comparable would do, but makes its argument escape: an
// allocation per event.)
func (k *copyKey) hash(seed maphash.Seed) uint64 {
	var b [60]byte
	copy(b[0:16], k.src[:])
	copy(b[16:32], k.dst[:])
	le := binary.LittleEndian
	le.PutUint32(b[32:], k.netns)
	le.PutUint32(b[36:], k.tcpSeq)
	le.PutUint16(b[40:], k.sport)
	le.PutUint16(b[42:], k.dport)
	le.PutUint16(b[44:], k.ipID)
	le.PutUint16(b[46:], k.icmpID)
	le.PutUint16(b[48:], k.icmpSeq)
	le.PutUint16(b[50:], k.payload)
	b[52], b[53], b[54], b[55], b[56] = k.family, k.proto, k.tcpFlags, k.icmpType, k.icmpCode
	return maphash.Bytes(seed, b[:57])
}

func copyKeyOf(h *trace.Hop) copyKey {
	t := h.Tuple
	k := copyKey{
		netns: h.Netns, src: t.Src.As16(), dst: t.Dst.As16(), tcpSeq: t.TCPSeq,
		sport: t.Sport, dport: t.Dport, ipID: t.IPID, icmpID: t.ICMPID, icmpSeq: t.ICMPSeq, payload: t.Payload,
		family: 6, proto: uint8(t.Proto), tcpFlags: uint8(t.TCPFlags), icmpType: t.ICMPType, icmpCode: t.ICMPCode,
	}
	if t.Src.Is4() {
		k.family = 4
	}
	return k
}

// copyIndex finds, by netns and headers, the packets open or held that were seen with them
// lately. Its entries, one per key, are kept in a ring in the order they are due to be looked
// at again (to forget packets seen too long ago), and found through a map from the key's hash:
// under a flood it holds thousands, and this costs a third of a map by the whole key.
type copyIndex struct {
	seed  maphash.Seed
	slot  map[uint64]int32 // the ring index of a key's entry, by the key's hash
	ring  []copyEntry      // circular: n entries from head on
	head  int
	n     int
	limit int
}

type copyEntry struct {
	key  copyKey
	hash uint64
	refs []copyRef // the packets seen with the key
	ns   uint64    // when the entry is due: none of its packets need keeping past ns+window
}

type copyRef struct {
	p  *packet
	ns uint64 // the latest time p was seen with the key
}

// copyIndexMax bounds the keys remembered. A forwarded packet is noted under a key in each
// namespace it passes, so this is some 3000 packets: at a thousand packets a second the
// index covers copyWindowNS, under a flood only the last tens of milliseconds, and a copy freed
// later than that is taken for a packet of its own.
const copyIndexMax = 8192

func newCopyIndex(limit int) copyIndex {
	return copyIndex{seed: maphash.MakeSeed(), slot: make(map[uint64]int32), limit: max(limit, 1)}
}

// entry is the entry of k (with hash h), nil if there is none.
func (x *copyIndex) entry(k copyKey, h uint64) *copyEntry {
	i, ok := x.slot[h]
	if !ok || x.ring[i].key != k {
		return nil
	}
	return &x.ring[i]
}

// note records that p was seen with h's netns and headers; past the limit of keys, the oldest
// is forgotten.
func (x *copyIndex) note(p *packet, h *trace.Hop) {
	k := copyKeyOf(h)
	hash := k.hash(x.seed)
	e := x.entry(k, hash)
	if e == nil {
		if i, ok := x.slot[hash]; ok {
			// Another key with the same 64-bit hash (as good as never): it makes way.
			clear(x.ring[i].refs)
			x.ring[i].refs = x.ring[i].refs[:0]
			x.ring[i].key = k
			e = &x.ring[i]
		} else {
			if x.n >= x.limit {
				x.dropFirst()
			}
			e = x.push(copyEntry{key: k, hash: hash, ns: h.TimeNS})
		}
	}
	for i := range e.refs {
		if e.refs[i].p == p {
			e.refs[i].ns = max(e.refs[i].ns, h.TimeNS)
			return
		}
	}
	e.refs = append(e.refs, copyRef{p, h.TimeNS})
}

// find returns the packet, open or held (or handed out too, with done), last seen with h's
// netns and headers, if that was within copyWindowNS before h (or a little after: events of
// other CPUs arrive out of order).
func (x *copyIndex) find(h *trace.Hop, done bool) *packet {
	k := copyKeyOf(h)
	e := x.entry(k, k.hash(x.seed))
	if e == nil {
		return nil
	}
	var best *packet
	var bestNS uint64
	for _, r := range e.refs {
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

// prune forgets the packets last seen with a key too long before nowNS to be copied still, and
// those handed out; a key with packets seen since is due again later.
func (x *copyIndex) prune(nowNS uint64) {
	for x.n > 0 && x.ring[x.head].ns+copyWindowNS+reorderSlackNS < nowNS {
		e := &x.ring[x.head]
		kept := e.refs[:0]
		var latest uint64
		for _, ref := range e.refs {
			if ref.ns > e.ns && ref.p.state != stDone {
				kept = append(kept, ref)
				latest = max(latest, ref.ns)
			}
		}
		clear(e.refs[len(kept):])
		if len(kept) == 0 {
			x.dropFirst()
			continue
		}
		again := *e
		again.refs, again.ns = kept, latest
		e.refs = nil // now again's
		x.head = (x.head + 1) % len(x.ring)
		x.n--
		x.push(again)
	}
}

// dropFirst forgets the first entry and the packets under it. Its slot keeps the (emptied)
// array of packets for the entry that will be pushed there.
func (x *copyIndex) dropFirst() {
	e := &x.ring[x.head]
	delete(x.slot, e.hash)
	clear(e.refs)
	e.refs = e.refs[:0]
	x.head = (x.head + 1) % len(x.ring)
	x.n--
}

// push adds e as the last entry, growing the ring up to the limit.
func (x *copyIndex) push(e copyEntry) *copyEntry {
	if x.n == len(x.ring) {
		grown := make([]copyEntry, min(max(2*len(x.ring), 64), x.limit))
		for i := range x.n {
			grown[i] = x.ring[(x.head+i)%len(x.ring)]
			x.slot[grown[i].hash] = int32(i)
		}
		x.ring, x.head = grown, 0
	}
	i := (x.head + x.n) % len(x.ring)
	if e.refs == nil {
		e.refs = x.ring[i].refs[:0] // the array of the entry that was here
	}
	x.ring[i] = e
	x.n++
	x.slot[e.hash] = int32(i)
	return &x.ring[i]
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

// segmentIndexCap bounds the index; past it, it starts over. Each entry keeps its packet's
// small struct alive: at 1<<16 a TCP flood held ~20 MB here. 8192 segments still span far more
// than a retransmission timeout at any rate short of a flood.
const segmentIndexCap = 1 << 13

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
		return trace.Fate{Outcome: trace.Delivered, Location: c.Location, Place: placeAt(hops, at)}
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
func (a *Assembler) keepEarly(ev *trace.Event) bool {
	h := &ev.Hop
	if (h.Event != trace.KindConsume && !neighProbe(h)) || h.Tuple == nil || len(a.early) >= a.maxOpen {
		return false
	}
	a.early = append(a.early, earlyCopy{ev: *ev, key: copyKeyOf(h)})
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
			if p.copies == nil {
				p.copies = a.spareHops()
			}
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
func (a *Assembler) releaseEarly(nowNS uint64, out *[]trace.Packet) {
	if len(a.early) == 0 {
		return
	}
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
	for i := range due {
		ev := &due[i]
		if neighProbe(&ev.Hop) || unplacedConsume(&ev.Hop) {
			a.releaseWaiting(ev, out)
			continue
		}
		p := a.start(ev.SKB)
		a.push(p, ev.CPU, &ev.Hop)
		a.complete(p, &ev.Hop, out)
	}
}

// neighProbe says whether a consume is the neighbour code freeing its copy of a packet queued
// for address resolution: neigh_probe clones the newest packet waiting for ARP/NDP, hands the
// clone to arp_solicit/ndisc_solicit and consume_skb's it, from __neigh_event_send (the first
// probe) or neigh_timer_handler (the probes after it), where it is inlined. The packet itself
// stays queued until the address resolves (then it is sent) or the entry fails (then it is
// dropped, NEIGH_FAILED).
//
// Kernels before neigh_probe used consume_skb freed the clone with kfree_skb: a drop without a
// reason (or NOT_SPECIFIED) at the same place is taken as the probe's copy too; the neighbour
// code names its own drops there (NEIGH_QUEUEFULL, NEIGH_FAILED).
func neighProbe(h *trace.Hop) bool {
	if h.Event != trace.KindConsume && (h.Event != trace.KindDrop || (h.Reason != "" && h.Reason != "NOT_SPECIFIED")) {
		return false
	}
	switch fn, _, _ := strings.Cut(h.Location, "+"); fn {
	case "__neigh_event_send", "neigh_probe", "neigh_timer_handler":
		return true
	}
	return false
}

// unplacedConsume is a consume the kernel does not say the place of (consume_skb has no
// location before 6.3). Alone, with no packet of its headers ever seen, it is no evidence of a
// delivery: a packet is delivered after it was received somewhere, and a packet waiting for
// ARP/NDP shows exactly this, its probe's copy freed where it was made. It is handed out as a
// packet whose end is unknown; whether it waits for its neighbour is for the node's state to say.
func unplacedConsume(h *trace.Hop) bool {
	return h.Event == trace.KindConsume && h.Location == ""
}

// waitingNote is the fate's note on a packet known only by its neighbour probe's copy.
const waitingNote = "waiting for its next hop's address (ARP/NDP): only the neighbour code's copy for the probe was seen, freed at "

// unplacedNote is the note on a packet known only by a consume the kernel did not place.
const unplacedNote = "only freed where it was made, never sent or received: waiting for its next hop's address (ARP/NDP), it seems (this kernel does not say where packets are freed)"

// waitingMax bounds the queued packets remembered (see releaseWaiting).
const waitingMax = 4096

// releaseWaiting hands out a neighbour probe's copy whose original was never seen: the
// original is queued in the neighbour entry (a locally generated packet passes no tracepoint
// before its first transmit). It becomes a packet whose end is unknown, with the copy's free
// as a copy's hop, never a delivery. The probes after the first clone the same queued packet
// again: those are counted as copies, not as packets.
func (a *Assembler) releaseWaiting(ev *trace.Event, out *[]trace.Packet) {
	a.stats.Copies++
	k := copyKeyOf(&ev.Hop)
	if _, seen := a.waiting[k]; seen {
		return
	}
	if a.waiting == nil || len(a.waiting) >= waitingMax {
		a.waiting = make(map[copyKey]struct{})
	}
	a.waiting[k] = struct{}{}
	ev.Hop.Copy = true
	p := a.start(ev.SKB)
	a.push(p, ev.CPU, &ev.Hop)
	a.complete(p, nil, out)
}

// waitingFor is the note on a packet whose end was not seen when a neighbour probe's copy of
// it was freed after its last own hop, in the namespace of that hop: it was queued for its next
// hop's address then. "" otherwise.
func waitingFor(own, copies []trace.Hop) string {
	if len(own) == 0 {
		return ""
	}
	last := &own[len(own)-1]
	for i := len(copies) - 1; i >= 0; i-- {
		if c := &copies[i]; neighProbe(c) && c.Netns == last.Netns && c.TimeNS+reorderSlackNS >= last.TimeNS {
			return waitingNote + c.Location
		}
	}
	return ""
}
