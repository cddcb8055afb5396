package nftrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// traceMsgType is the header type of trace events.
const traceMsgType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_TRACE)

// event is one decoded NFT_MSG_TRACE message. The kernel sends one per rule
// that ended with a verdict (including "continue" for a matching rule without
// one), per return from a regular chain and per base chain policy applied.
type event struct {
	family       byte // table family (nfgenmsg)
	table, chain string
	handle       uint64 // NFTA_TRACE_RULE_HANDLE, 0 when absent (policy)
	typ          uint32 // NFT_TRACETYPE_*
	id           uint32 // NFTA_TRACE_ID: the same for one packet across chains and hooks
	verdict      int32  // NFTA_VERDICT_CODE
	hasVerdict   bool
	target       string // NFTA_VERDICT_CHAIN of a jump/goto
	policy       uint32 // NFTA_TRACE_POLICY
	hasPolicy    bool
	nfproto      uint32
	iif, oif     uint32
	src, dst     netip.Addr // from NFTA_TRACE_NETWORK_HEADER, only in a traversal's first event
	// Conntrack's view of the packet (Linux 6.6+: NFTA_TRACE_CT_*), only in a traversal's
	// first event: ctState is nft's ct state bit (1 invalid or not seen by conntrack yet,
	// 2 established, 4 related, 8 new, 64 untracked), ctDir 0 original, 1 reply.
	ctState uint32
	hasCt   bool
	ctDir   uint8
	hasDir  bool
}

// Trace attributes newer than x/sys/unix (linux/netfilter/nf_tables.h, Linux 6.6).
const (
	nftaTraceCtDirection = 0x13
	nftaTraceCtState     = 0x15
)

// decodeEvent parses a trace message; ok is false for other messages.
func decodeEvent(m netlink.Message) (ev event, ok bool, err error) {
	if m.Header.Type != traceMsgType {
		return ev, false, nil
	}
	if len(m.Data) < 4 {
		return ev, false, errors.New("short trace message")
	}
	ev.family = m.Data[0]
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ev, false, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TRACE_TABLE:
			ev.table = ad.String()
		case unix.NFTA_TRACE_CHAIN:
			ev.chain = ad.String()
		case unix.NFTA_TRACE_RULE_HANDLE:
			ev.handle = ad.Uint64()
		case unix.NFTA_TRACE_TYPE:
			ev.typ = ad.Uint32()
		case unix.NFTA_TRACE_ID:
			ev.id = ad.Uint32()
		case unix.NFTA_TRACE_VERDICT:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case unix.NFTA_VERDICT_CODE:
						ev.verdict = int32(nad.Uint32())
						ev.hasVerdict = true
					case unix.NFTA_VERDICT_CHAIN:
						ev.target = nad.String()
					}
				}
				return nil
			})
		case unix.NFTA_TRACE_POLICY:
			ev.policy = ad.Uint32()
			ev.hasPolicy = true
		case unix.NFTA_TRACE_NFPROTO:
			ev.nfproto = ad.Uint32()
		case unix.NFTA_TRACE_IIF:
			ev.iif = ad.Uint32()
		case unix.NFTA_TRACE_OIF:
			ev.oif = ad.Uint32()
		case unix.NFTA_TRACE_NETWORK_HEADER:
			ev.src, ev.dst = parseNetworkHeader(ad.Bytes())
		case nftaTraceCtState:
			ev.ctState, ev.hasCt = ad.Uint32(), true
		case nftaTraceCtDirection:
			ev.ctDir, ev.hasDir = ad.Uint8(), true
		}
	}
	if err := ad.Err(); err != nil {
		return ev, false, err
	}
	return ev, true, nil
}

// parseNetworkHeader returns the addresses of an IPv4 or IPv6 header (the
// kernel sends at most 40 bytes of it).
func parseNetworkHeader(b []byte) (src, dst netip.Addr) {
	if len(b) == 0 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) >= 20 {
			src = netip.AddrFrom4([4]byte(b[12:16]))
			dst = netip.AddrFrom4([4]byte(b[16:20]))
		}
	case 6:
		if len(b) >= 40 {
			src = netip.AddrFrom16([16]byte(b[8:24]))
			dst = netip.AddrFrom16([16]byte(b[24:40]))
		}
	}
	return
}

// isDrop reports whether the event is a packet being dropped, by a rule's
// verdict (drop, reject and anything else ending in NF_DROP, including
// NF_DROP_ERR codes) or by a base chain's policy.
func (ev *event) isDrop() (drop, policy bool) {
	switch ev.typ {
	case unix.NFT_TRACETYPE_RULE:
		if !ev.hasVerdict {
			return false, false
		}
		// NFT_CONTINUE .. NFT_RETURN are -1 .. -5; NF_DROP_ERR(e) is
		// (-e << 16) | NF_DROP, also negative.
		if ev.verdict < 0 && ev.verdict >= unix.NFT_RETURN {
			return false, false
		}
		return uint32(ev.verdict)&nfVerdictMask == nfDrop, false
	case unix.NFT_TRACETYPE_POLICY:
		return ev.hasPolicy && ev.policy&nfVerdictMask == nfDrop, true
	}
	return false, false
}

// chainRef names a chain of a table.
type chainRef struct {
	family       byte
	table, chain string
}

// packetState is what earlier events told about one traced packet.
type packetState struct {
	src, dst netip.Addr
	chains   []chainRef // chains it went through, oldest first (bounded)
	ours     bool       // our own marking rule matched it
	seen     time.Time
	// Conntrack's view in the latest traversal that told it (0: never told).
	ctState uint32
	ctDir   int8 // -1 unknown
}

const (
	maxTracked       = 4096
	trackedLifetime  = 10 * time.Second
	maxChainsTracked = 32
)

// candidate is a drop event waiting for its rule to be looked up.
type candidate struct {
	ev       event
	src, dst netip.Addr
	path     []chainRef // chains of the same table seen earlier for this packet, latest first
	ctState  uint32     // conntrack's view when it was dropped (0: not told)
	ctDir    int8
}

// tracker correlates events of the same packet (same trace id).
type tracker struct {
	packets map[uint32]*packetState
}

func (t *tracker) observe(ev *event, now time.Time) *packetState {
	if t.packets == nil {
		t.packets = map[uint32]*packetState{}
	}
	p := t.packets[ev.id]
	if p == nil {
		if len(t.packets) >= maxTracked {
			t.sweep(now)
		}
		p = &packetState{ctDir: -1}
		t.packets[ev.id] = p
	}
	p.seen = now
	if ev.src.IsValid() {
		p.src, p.dst = ev.src, ev.dst
	}
	if isOurTable(ev.family, ev.table) {
		return p
	}
	// Our marking chains run before conntrack: only the rule sets' own traversals tell.
	if ev.hasCt {
		p.ctState, p.ctDir = ev.ctState, -1
		if ev.hasDir {
			p.ctDir = int8(ev.ctDir)
		}
	}
	ref := chainRef{ev.family, ev.table, ev.chain}
	if n := len(p.chains); n == 0 || p.chains[n-1] != ref {
		if n >= maxChainsTracked {
			p.chains = append(p.chains[:0], p.chains[n-maxChainsTracked/2:]...)
		}
		p.chains = append(p.chains, ref)
	}
	return p
}

func (t *tracker) sweep(now time.Time) {
	for id, p := range t.packets {
		if now.Sub(p.seen) > trackedLifetime {
			delete(t.packets, id)
		}
	}
	if len(t.packets) >= maxTracked {
		clear(t.packets)
	}
}

// readTraces reads trace events until the socket is closed and hands drops
// to the resolver.
func (s *Session) readTraces() {
	defer s.wg.Done()
	defer close(s.pending)
	var t tracker
	for {
		msgs, err := s.trace.Receive()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			if s.draining.Load() && isTimeout(err) {
				return // Close's drain: the socket is read to its end
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The socket overflowed: events were lost, reading goes on.
				s.lost.Add(1)
				continue
			}
			s.warnf("reading trace events: %v", err)
			return
		}
		now := time.Now()
		for _, m := range msgs {
			ev, ok, err := decodeEvent(m)
			if err != nil {
				s.warnf("decoding trace event: %v", err)
				continue
			}
			if !ok {
				continue
			}
			if isOurTable(ev.family, ev.table) {
				// Our marking rule's event: the packet is of the
				// traced flow, and the header is as it arrived.
				if ev.table == s.table {
					t.observe(&ev, now).ours = true
				}
				continue
			}
			p := t.observe(&ev, now)
			drop, _ := ev.isDrop()
			if !drop || !p.ours {
				// Packets marked by someone else's nftrace rule
				// (nft monitor trace, another tracer) are not ours.
				continue
			}
			c := candidate{ev: ev, src: p.src, dst: p.dst, ctState: p.ctState, ctDir: p.ctDir}
			for i := len(p.chains) - 2; i >= 0; i-- {
				if r := p.chains[i]; r.family == ev.family && r.table == ev.table && r.chain != ev.chain {
					c.path = append(c.path, r)
				}
			}
			select {
			case s.pending <- c:
			default:
				s.lost.Add(1)
			}
			// A dropped packet is done with.
			delete(t.packets, ev.id)
		}
	}
}

func (c *candidate) String() string {
	return fmt.Sprintf("table %s %s chain %s handle %d", familyName(c.ev.family), c.ev.table, c.ev.chain, c.ev.handle)
}
