package svg

import (
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/render/internal/journey"
	"github.com/pathtrace/pathtrace/trace"
)

// The picture: each network namespace a box (a column), each device a small box on the edge
// of its namespace that faces where the packet came from or went to (inside it when the
// packet only went through it: a tunnel device, a bridge), and the packet's way from device
// to device as numbered arrows. In a merged trace each node's namespaces are framed together
// and the wire runs between the frames.

// Sizes, in pixels of the picture (and of its PNG at scale 1).
const (
	margin    = 24.0
	top       = 96.0 // the title and the legend above the boxes
	titleH    = 60.0 // a box's title area above its first device
	slotH     = 64.0 // a device slot
	devH      = 28.0
	minBoxW   = 170.0
	minGap    = 110.0 // between columns, past the devices that stick out
	nodeGap   = 70.0  // more between two nodes: the wire
	nodePad   = 16.0  // a node's frame around its boxes
	fontSize  = 13.0
	charWidth = 0.62 * fontSize // a generous average for sans-serif
)

func textW(s string, size float64) float64 { return float64(len([]rune(s))) * 0.62 * size }

type nsKey struct {
	node  string
	netns trace.PlaceKey // Ifname empty
}

type box struct {
	key   nsKey
	title string
	col   int
	x, y  float64
	w, h  float64
	slots [3]int     // devices placed on the left edge, inside, on the right edge
	out   [3]float64 // how far the widest of them sticks out of the box (half its width)
	note  []note     // what ended there: the drop, the delivery
}

// note is a fate drawn in a box: its mark at (mx, my), its words at (tx, ty) and below.
type note struct {
	flow   trace.Direction
	kind   trace.Outcome
	lines  []string
	mx, my float64
	tx, ty float64
	dev    *device
}

type device struct {
	key  trace.PlaceKey
	name string
	box  *box
	side int // -1 left edge, 0 inside, +1 right edge; 2 while undecided
	slot int
	x, y float64
	w    float64
}

// stop is where a packet was at some hops in a row: a device, or a namespace (no device).
type stop struct {
	box *box
	dev *device
}

func (s stop) point() (float64, float64) {
	if s.dev != nil {
		return s.dev.x, s.dev.y
	}
	return s.box.x + s.box.w/2, s.box.y + s.box.h/2
}

type arrow struct {
	from, to stop
	flow     trace.Direction
	n        int
	label    string // the NAT rewrite it carries
}

type layout struct {
	boxes   []*box
	devices map[trace.PlaceKey]*device
	arrows  []*arrow
	nodes   []string // in column order; one "" for a trace of one node
	w, h    float64
	req     *trace.Packet
	rep     *trace.Packet
}

// Picture chooses, from packets added one at a time (a live run reads its packets back one
// by one), the ones to draw: the first request and the first reply, but one that was dropped
// where packets of its direction were (the one the verdict is about). Copies are left out:
// they retell another packet's journey.
type Picture struct {
	req, rep *trace.Packet
	packets  int
}

// Add considers p; it keeps p itself (not a copy) when it draws it.
func (pc *Picture) Add(p *trace.Packet) {
	pc.packets++
	if p.CopyOf != 0 {
		return
	}
	cur := &pc.req
	if p.Flow == trace.Reply {
		cur = &pc.rep
	}
	if *cur == nil || ((*cur).Fate.Outcome != trace.Dropped && p.Fate.Outcome == trace.Dropped) {
		*cur = p
	}
}

// drawn is whether a hop is part of the picture: route lookups have no device, and the free
// of a copy is another packet's end.
func drawn(h trace.Hop) bool {
	return h.Event != trace.KindRoute && !h.Copy && (h.Netns != 0 || h.NetnsName != "")
}

func newLayout(t *trace.Trace, pc *Picture) *layout {
	l := &layout{devices: map[trace.PlaceKey]*device{}}
	l.req, l.rep = pc.req, pc.rep
	boxes := map[nsKey]*box{}
	n := 0
	for _, p := range []*trace.Packet{l.req, l.rep} {
		if p == nil {
			continue
		}
		var prev *stop
		var prevTuple *trace.Tuple
		pending, prevEncap := "", ""
		hops := trace.InTimeOrder(p.Hops)
		for i, h := range hops {
			if !drawn(h) {
				continue
			}
			nk := nsKey{node: h.Node, netns: h.Place.Key()}
			nk.netns.Ifname = ""
			b := boxes[nk]
			if b == nil {
				b = &box{key: nk, title: h.Namespace()}
				boxes[nk] = b
				l.boxes = append(l.boxes, b)
			}
			s := stop{box: b}
			if h.Ifname != "" {
				d := l.devices[h.Place.Key()]
				if d == nil {
					d = &device{key: h.Place.Key(), name: h.Ifname, box: b, side: 2}
					if h.DevicePod != "" && h.Pod == "" {
						d.name += " > pod " + h.DevicePod
					}
					l.devices[d.key] = d
				}
				s.dev = d
			}
			if h.Tuple != nil {
				if prevTuple != nil {
					if nat := journey.NAT(*prevTuple, h.Tuple.Tuple); nat != "" {
						pending = nat
					}
				}
				prevTuple = &h.Tuple.Tuple
			}
			encap := ""
			if h.Encap != "" && h.Outer != nil {
				encap = "in " + h.Encap + " " + vniText(h.VNI) + h.Outer.Src.String() + " > " + h.Outer.Dst.String()
			}
			if prev != nil && (prev.box != s.box || prev.dev != s.dev) {
				if pending == "" && encap != "" && encap == prevEncap {
					pending = encap // the tunnel's own headers on the wire
				}
				n++
				a := &arrow{from: *prev, to: s, flow: p.Flow, n: n, label: pending}
				pending = ""
				l.arrows = append(l.arrows, a)
			} else if pending != "" && len(l.arrows) > 0 && l.arrows[len(l.arrows)-1].to == s && l.arrows[len(l.arrows)-1].label == "" {
				// Rewritten after it arrived here: told on the way in.
				l.arrows[len(l.arrows)-1].label, pending = pending, ""
			}
			prev, prevEncap = &s, encap
			if i == lastDrawn(hops) {
				b.note = append(b.note, fateNote(p, s))
			}
		}
	}
	l.place(t)
	return l
}

func lastDrawn(hops []trace.Hop) int {
	for i := len(hops) - 1; i >= 0; i-- {
		if drawn(hops[i]) {
			return i
		}
	}
	return -1
}

func fateNote(p *trace.Packet, s stop) note {
	f := p.Fate
	nt := note{flow: p.Flow, kind: f.Outcome, dev: s.dev}
	switch f.Outcome {
	case trace.Dropped:
		nt.lines = []string{"DROPPED (" + string(p.Flow) + ")"}
		if r := journey.ReasonAt(f.Reason, f.Location); r != "" {
			nt.lines = append(nt.lines, r)
		}
	case trace.Delivered:
		nt.lines = []string{string(p.Flow) + " delivered"}
	case trace.LeftHost:
		nt.lines = []string{string(p.Flow) + " left the host"}
	default:
		nt.lines = []string{string(p.Flow) + ": end not seen"}
	}
	return nt
}

// place orders the boxes in columns, decides each device's edge and sets every coordinate.
func (l *layout) place(t *trace.Trace) {
	// Columns: by node in order of first sight, then by first sight within the node.
	for _, b := range l.boxes {
		if !contains(l.nodes, b.key.node) {
			l.nodes = append(l.nodes, b.key.node)
		}
	}
	var ordered []*box
	for _, n := range l.nodes {
		for _, b := range l.boxes {
			if b.key.node == n {
				b.col = len(ordered)
				ordered = append(ordered, b)
			}
		}
	}
	l.boxes = ordered
	// A device faces the namespace the packet came from or went to through it.
	for _, a := range l.arrows {
		if a.from.box == a.to.box {
			continue
		}
		face := func(d *device, other *box) {
			if d != nil && d.side == 2 {
				d.side = sign(other.col - d.box.col)
			}
		}
		face(a.from.dev, a.to.box)
		face(a.to.dev, a.from.box)
	}
	// Slots, in order of first sight: walk the arrows again.
	slot := func(d *device) {
		if d == nil || d.w != 0 {
			return
		}
		if d.side == 2 {
			d.side = 0
		}
		d.w = max(64, textW(d.name, fontSize)+16)
		d.slot = d.box.slots[d.side+1]
		d.box.slots[d.side+1]++
		d.box.out[d.side+1] = max(d.box.out[d.side+1], d.w/2)
	}
	for _, a := range l.arrows {
		slot(a.from.dev)
		slot(a.to.dev)
	}
	for _, b := range l.boxes {
		for _, nt := range b.note {
			slot(nt.dev)
		}
	}
	// Widths: the title, the devices inside, what the notes and the arrows across say.
	rows := 1
	for _, b := range l.boxes {
		b.w = max(minBoxW, textW(b.title, fontSize+1)*1.1+24) // bold
		for _, nt := range b.note {
			for _, s := range nt.lines {
				b.w = max(b.w, textW(s, fontSize)+40)
			}
		}
		rows = max(rows, b.slots[0], b.slots[1], b.slots[2])
	}
	for _, d := range l.devices {
		if d.side == 0 {
			// Room for the arrows in and out on either side.
			d.box.w = max(d.box.w, d.box.out[0]+d.box.out[2]+d.w+2*minGap)
		}
	}
	gaps := make([]float64, len(l.boxes)) // after each column
	for i := range gaps {
		gaps[i] = minGap
	}
	for _, a := range l.arrows {
		w := textW(a.label, fontSize-1) + 24
		if a.from.box == a.to.box {
			a.from.box.w = max(a.from.box.w, w)
		} else if c := min(a.from.box.col, a.to.box.col); max(a.from.box.col, a.to.box.col) == c+1 {
			gaps[c] = max(gaps[c], w)
		}
	}
	noteH := 0.0
	for _, b := range l.boxes {
		h := 0.0
		for _, nt := range b.note {
			h += 26 + 17*float64(len(nt.lines))
		}
		noteH = max(noteH, h)
	}
	boxH := titleH + float64(rows)*slotH + noteH + 8
	x := margin
	for i, b := range l.boxes {
		if i > 0 {
			prev := l.boxes[i-1]
			x += halfOut(prev, 1) + gaps[i-1] + halfOut(b, -1)
			if prev.key.node != b.key.node {
				x += nodeGap + 2*nodePad
			}
		} else {
			x += halfOut(b, -1)
			if len(l.nodes) > 1 {
				x += nodePad
			}
		}
		b.x, b.y, b.h = x, top+nodePad+20, boxH
		x += b.w
	}
	for _, d := range l.devices {
		b := d.box
		d.y = b.y + titleH + float64(d.slot)*slotH + devH/2
		switch d.side {
		case -1:
			d.x = b.x
		case 1:
			d.x = b.x + b.w
		default:
			d.x = b.x + b.w/2
		}
	}
	for _, b := range l.boxes {
		y := b.y + titleH + float64(rows)*slotH
		for i := range b.note {
			nt := &b.note[i]
			nt.tx, nt.ty = b.x+b.w/2, y+30
			nt.mx, nt.my = b.x+b.w/2, y+10
			if nt.dev != nil && nt.kind == trace.Dropped {
				// The mark beside the device it died on, inside the box.
				nt.mx = nt.dev.x - float64(nt.dev.side)*(nt.dev.w/2+22)
				if nt.dev.side == 0 {
					nt.mx = nt.dev.x + nt.dev.w/2 + 22
				}
				nt.my = nt.dev.y
			}
			y += 26 + 17*float64(len(nt.lines))
		}
	}
	last := l.boxes[len(l.boxes)-1]
	l.w = last.x + last.w + halfOut(last, 1) + margin
	if len(l.nodes) > 1 {
		l.w += nodePad
	}
	l.h = l.boxes[0].y + boxH + nodePad + margin + 12
}

// halfOut is how far the devices on one edge of b stick out of it, and a little room.
func halfOut(b *box, side int) float64 { return b.out[side+1] + 8 }

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// wrap cuts s into lines of at most width pixels.
func wrap(s string, width, size float64) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && textW(line+" "+w, size) > width {
			lines = append(lines, line)
			line = w
			continue
		}
		line = strings.TrimSpace(line + " " + w)
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// vniText is "vni N " for a tunnel hop whose VNI the trace carries, else "".
func vniText(vni uint32) string {
	if vni == 0 {
		return ""
	}
	return "vni " + strconv.FormatUint(uint64(vni), 10) + " "
}
