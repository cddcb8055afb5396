// Package pcapng writes a trace's packets as a pcapng capture for Wireshark and tshark: the
// headers the kernel held at each hop (Hop.Bytes, recorded with --pcapng), one interface per
// place they were seen, and a comment on each packet saying what happened to it there.
//
// The format is simple enough to write by hand (draft-ietf-opsawg-pcapng): a section header
// block with the verdict, an interface description block per (node, network namespace,
// device), and an enhanced packet block per hop, in time order. Bytes start at the IP header,
// so every interface is LINKTYPE_RAW; timestamps are in nanoseconds (if_tsresol 9).
package pcapng

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/render/internal/journey"
	"github.com/pathtrace/pathtrace/trace"
)

// ErrNoBytes: no hop of the trace carries packet bytes (it was taken without --pcapng).
var ErrNoBytes = errors.New("the trace holds no packet bytes: take it with --pcapng")

// SnapLen is the most bytes of a packet a hop holds (the kernel side's SNAP_LEN).
const SnapLen = 128

const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockEPB = 0x00000006

	optEnd     = 0
	optComment = 1
	// Section header options.
	optSHBHardware = 2
	optSHBOS       = 3
	optSHBUserAppl = 4
	// Interface description options.
	optIfName        = 2
	optIfDescription = 3
	optIfTSResol     = 9

	linkTypeRaw = 101 // raw IPv4 or IPv6, by the version nibble
)

// Comment is what the packet block of hop i of p says: the packet, the hop, and what
// happened to it there, the last one its fate. "pkt=7 " starts it, so the Wireshark filter
// frame.comment contains "pkt=7 " shows one packet's whole journey.
func Comment(p *trace.Packet, hops []trace.Hop, i int, prevTuple *trace.Tuple, route *trace.Route) string {
	h := hops[i]
	var b strings.Builder
	fmt.Fprintf(&b, "pkt=%d %s hop %d/%d: %s", p.ID, p.Flow, i+1, len(hops), journey.Event(h, p.Fate.Outcome))
	if h.Probe != "" {
		b.WriteString(" (" + h.Probe + ")")
	}
	b.WriteString(" on " + journey.Interface(h.Place))
	if h.DevicePod != "" && h.Pod == "" {
		b.WriteString(" -> pod " + h.DevicePod)
	}
	if h.Encap != "" && h.Outer != nil {
		fmt.Fprintf(&b, "; in %s", h.Encap)
		if h.VNI != 0 {
			fmt.Fprintf(&b, " vni %d", h.VNI)
		}
		fmt.Fprintf(&b, " %s > %s", h.Outer.Src, h.Outer.Dst)
	}
	if h.Tuple != nil && prevTuple != nil {
		if n := journey.NAT(*prevTuple, h.Tuple.Tuple); n != "" {
			b.WriteString("; " + n)
		}
	}
	if route != nil {
		b.WriteString("; " + journey.Route(*route))
	}
	if h.Event == trace.KindDrop && h.Copy {
		b.WriteString("; a copy freed: " + journey.ReasonAt(h.Reason, h.Location))
	}
	if f := h.Func; f != nil && h.Event == trace.KindFunc && f.Ret != nil && f.Verdict == "" {
		b.WriteString("; returned " + strconv.Itoa(int(*f.Ret)))
	}
	if i == len(hops)-1 {
		b.WriteString("; fate: " + journey.Fate(p.Fate))
	} else if h.Event == trace.KindDrop && !h.Copy && h.Reason+h.Location != "" {
		b.WriteString("; " + journey.ReasonAt(h.Reason, h.Location))
	}
	return b.String()
}

// record is one packet block to write.
type record struct {
	ts      uint64 // ns since the trace started
	iface   uint32
	data    []byte
	comment string
	order   int // its place in the trace, for records at the same time
}

// Write writes t's hops that carry bytes as a pcapng file. It fails with ErrNoBytes when
// the trace has packets but none of their hops carries bytes.
func Write(w io.Writer, t *trace.Trace) error {
	var c Capture
	for i := range t.Packets {
		c.Add(&t.Packets[i])
	}
	return c.Write(w, t)
}

// Capture collects the packet blocks of packets added one at a time (a live run reads its
// packets back one by one), keeping of each only its bytes and comments.
type Capture struct {
	ifaces  map[trace.PlaceKey]uint32
	idbs    [][]byte
	recs    []record
	packets int
}

// Add takes p's hops that carry bytes.
func (c *Capture) Add(p *trace.Packet) {
	if c.ifaces == nil {
		c.ifaces = map[trace.PlaceKey]uint32{}
	}
	c.packets++
	hops := trace.InTimeOrder(p.Hops)
	var prev *trace.Tuple
	var route *trace.Route
	for i := range hops {
		h := &hops[i]
		if h.Route != nil && h.Event == trace.KindRoute {
			route = h.Route // said on the packet block that follows it
		}
		if len(h.Bytes) > 0 {
			key := h.Place.Key()
			id, ok := c.ifaces[key]
			if !ok {
				id = uint32(len(c.idbs))
				c.ifaces[key] = id
				c.idbs = append(c.idbs, idb(h.Place))
			}
			c.recs = append(c.recs, record{ts: h.TimeNS, iface: id, data: h.Bytes,
				comment: Comment(p, hops, i, prev, route), order: len(c.recs)})
			route = nil
		}
		if h.Tuple != nil {
			prev = &h.Tuple.Tuple
		}
	}
}

// Write writes the capture of the packets added, in time order, with t's verdict and times.
func (c *Capture) Write(w io.Writer, t *trace.Trace) error {
	if len(c.recs) == 0 && c.packets > 0 {
		return ErrNoBytes // with no packet at all, the capture is the verdict alone
	}
	start := uint64(0)
	if !t.Meta.StartedAt.IsZero() {
		start = uint64(t.Meta.StartedAt.UnixNano())
	}
	slices.SortStableFunc(c.recs, func(a, b record) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.order, b.order))
	})
	bw := bufio.NewWriter(w)
	bw.Write(shb(t))
	for _, b := range c.idbs {
		bw.Write(b)
	}
	var buf []byte
	for _, r := range c.recs {
		r.ts += start
		buf = epb(buf[:0], r)
		bw.Write(buf)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write pcapng: %w", err)
	}
	return nil
}

// block frames a block's body: type, total length, body, total length again.
func block(typ uint32, body []byte) []byte {
	n := uint32(12 + len(body))
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = binary.LittleEndian.AppendUint32(b, n)
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, n)
}

// option appends an option, its value padded to 32 bits.
func option(b []byte, code uint16, value []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	b = append(b, value...)
	return pad(b)
}

func pad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func endOptions(b []byte) []byte { return append(b, 0, 0, 0, 0) }

func shb(t *trace.Trace) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x1A2B3C4D) // byte-order magic
	b = binary.LittleEndian.AppendUint16(b, 1)             // version 1.0
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, ^uint64(0)) // section length not given
	b = option(b, optComment, []byte("pathtrace verdict: "+journey.Verdict(t.Verdict)))
	if s := strings.TrimSpace(t.Verdict.Summary); s != "" {
		b = option(b, optComment, []byte(s))
	}
	for i, f := range t.Verdict.Fix {
		b = option(b, optComment, []byte("fix "+strconv.Itoa(i+1)+": "+f))
	}
	b = option(b, optComment, []byte("filter: "+t.Filter.String()))
	if t.Meta.Hostname != "" {
		b = option(b, optSHBHardware, []byte(t.Meta.Hostname))
	}
	if t.Meta.Kernel != "" {
		b = option(b, optSHBOS, []byte("Linux "+t.Meta.Kernel))
	}
	b = option(b, optSHBUserAppl, []byte("pathtrace"))
	return block(blockSHB, endOptions(b))
}

func idb(p trace.Place) []byte {
	b := binary.LittleEndian.AppendUint16(nil, linkTypeRaw)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, SnapLen)
	b = option(b, optIfName, []byte(journey.Interface(p)))
	desc := "network namespace " + p.Namespace()
	if p.Netns != 0 {
		desc += " (inode " + strconv.FormatUint(uint64(p.Netns), 10) + ")"
	}
	if p.DevicePod != "" && p.Pod == "" {
		desc += ", leads to pod " + p.DevicePod
	}
	if p.Node != "" {
		desc += ", node " + p.Node
	}
	b = option(b, optIfDescription, []byte(desc))
	b = option(b, optIfTSResol, []byte{9})
	return block(blockIDB, endOptions(b))
}

func epb(b []byte, r record) []byte {
	b = binary.LittleEndian.AppendUint32(b, blockEPB)
	b = binary.LittleEndian.AppendUint32(b, 0) // total length, set below
	b = binary.LittleEndian.AppendUint32(b, r.iface)
	b = binary.LittleEndian.AppendUint32(b, uint32(r.ts>>32))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.ts))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.data)))
	b = binary.LittleEndian.AppendUint32(b, originalLen(r.data))
	b = pad(append(b, r.data...))
	b = endOptions(option(b, optComment, []byte(r.comment)))
	n := uint32(len(b) + 4)
	binary.LittleEndian.PutUint32(b[4:], n)
	return binary.LittleEndian.AppendUint32(b, n)
}

// originalLen is the packet's length as its IP header gives it: the bytes are its headers.
func originalLen(b []byte) uint32 {
	n := uint32(len(b))
	switch {
	case len(b) >= 4 && b[0]>>4 == 4:
		n = max(n, uint32(binary.BigEndian.Uint16(b[2:])))
	case len(b) >= 6 && b[0]>>4 == 6:
		n = max(n, 40+uint32(binary.BigEndian.Uint16(b[4:])))
	}
	return n
}
