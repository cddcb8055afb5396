// Package svg draws a trace's journey as one self-contained SVG picture for a postmortem:
// the network namespaces as boxes (a column per node in a merged trace, the wire between),
// devices on their edges, the request's way as solid numbered arrows and the reply's as
// dashed ones, NAT rewrites on the arrow where they happen, the drop as a red cross with its
// reason, and the verdict as the caption. No script, no external font or image; solid and
// dashed lines, the cross and the words tell it printed in black and white too.
package svg

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/render/internal/journey"
	"github.com/pathtrace/pathtrace/trace"
)

// Colours: dark enough to print as black, told apart by line style as well.
const (
	inkRequest = "#1f4e9c" // solid
	inkReply   = "#a64d00" // dashed
	inkDrop    = "#d00000" // a cross, and the word DROPPED
	inkGood    = "#1d6b2f"
	inkBox     = "#333333"
	inkFaint   = "#777777"
)

// DropMarkID is the id of the drop's mark: the element is a group translated to the mark's
// centre (tests look for the red there in the rendered picture).
const DropMarkID = "drop"

// Write draws t.
func Write(w io.Writer, t *trace.Trace) error {
	var pc Picture
	for i := range t.Packets {
		pc.Add(&t.Packets[i])
	}
	return pc.Write(w, t)
}

// Write draws the packets chosen among those added, with t's filter and verdict.
func (pc *Picture) Write(w io.Writer, t *trace.Trace) error {
	bw := bufio.NewWriter(w)
	d := drawing{w: bw}
	d.draw(t, pc)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

type drawing struct {
	w *bufio.Writer
}

func (d drawing) f(format string, args ...any) { fmt.Fprintf(d.w, format, args...) }

func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// esc escapes text for XML.
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		default:
			if r < 0x20 && r != '\t' {
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// text writes a line of text; extra is more attributes.
func (d drawing) text(x, y float64, size float64, anchor, fill, s, extra string) {
	d.f(`<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s>%s</text>`+"\n",
		num(x), num(y), num(size), anchor, fill, extra, esc(s))
}

const halo = ` stroke="#ffffff" stroke-width="4" paint-order="stroke" stroke-linejoin="round"`

func (d drawing) draw(t *trace.Trace, pc *Picture) {
	if pc.packets == 0 {
		d.empty(t)
		return
	}
	l := newLayout(t, pc)
	if len(l.boxes) == 0 {
		d.empty(t)
		return
	}
	caption := wrap(journey.Verdict(t.Verdict), l.w-2*margin, fontSize+1)
	height := l.h + float64(len(caption))*19 + 8
	d.head(l.w, height)
	d.title(t, l, pc.packets)
	d.nodes(l)
	for _, b := range l.boxes {
		d.f(`<rect x="%s" y="%s" width="%s" height="%s" rx="8" fill="#ffffff" stroke="%s" stroke-width="1.5"/>`+"\n",
			num(b.x), num(b.y), num(b.w), num(b.h), inkBox)
		d.text(b.x+b.w/2, b.y+24, fontSize+1, "middle", inkBox, b.title, ` font-weight="bold"`)
	}
	for _, a := range l.arrows {
		d.arrow(a)
	}
	for _, dv := range l.devicesInOrder() {
		d.f(`<rect x="%s" y="%s" width="%s" height="%s" rx="4" fill="#eeeeee" stroke="%s" stroke-width="1.2"/>`+"\n",
			num(dv.x-dv.w/2), num(dv.y-devH/2), num(dv.w), num(devH), inkBox)
		d.text(dv.x, dv.y+4.5, fontSize-1, "middle", "#000000", dv.name, "")
	}
	for _, a := range l.arrows {
		d.arrowLabels(a)
	}
	for _, b := range l.boxes {
		for _, nt := range b.note {
			d.note(nt)
		}
	}
	y := l.h
	for _, line := range caption {
		d.text(margin, y, fontSize+1, "start", "#000000", line, ` font-weight="bold"`)
		y += 19
	}
	d.f("</svg>\n")
}

func (d drawing) head(w, h float64) {
	d.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="sans-serif">`+"\n",
		num(w), num(h), num(w), num(h))
	d.f("<title>pathtrace: where the packets went</title>\n")
	for _, m := range []struct{ id, ink string }{{"req", inkRequest}, {"rep", inkReply}} {
		d.f(`<defs><marker id="head-%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">`+
			`<path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker></defs>`+"\n", m.id, m.ink)
	}
	d.f(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
}

func (d drawing) empty(t *trace.Trace) {
	lines := append([]string{t.Filter.String()}, wrap(journey.Verdict(t.Verdict), 560, fontSize+1)...)
	d.head(620, 40+float64(len(lines))*20)
	for i, s := range lines {
		d.text(margin, 32+float64(i)*20, fontSize+1, "start", "#000000", s, "")
	}
	d.f("</svg>\n")
}

func (d drawing) title(t *trace.Trace, l *layout, packets int) {
	s := t.Filter.String()
	var which []string
	if l.req != nil {
		which = append(which, "request #"+strconv.Itoa(l.req.ID))
	}
	if l.rep != nil {
		which = append(which, "reply #"+strconv.Itoa(l.rep.ID))
	}
	if len(which) > 0 {
		s += "   (" + strings.Join(which, ", ") + " of " + strconv.Itoa(packets) + " packets)"
	}
	d.text(margin, 30, fontSize+3, "start", "#000000", s, ` font-weight="bold"`)
	// The legend.
	y, x := 58.0, margin
	d.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5" marker-end="url(#head-req)"/>`+"\n", num(x), num(y-4), num(x+40), num(y-4), inkRequest)
	d.text(x+48, y, fontSize, "start", "#000000", "request", "")
	x += 120
	d.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5" stroke-dasharray="8 5" marker-end="url(#head-rep)"/>`+"\n", num(x), num(y-4), num(x+40), num(y-4), inkReply)
	d.text(x+48, y, fontSize, "start", "#000000", "reply", "")
	x += 100
	d.cross(x+8, y-4, 7, "")
	d.text(x+22, y, fontSize, "start", "#000000", "dropped", "")
	x += 100
	d.text(x, y, fontSize, "start", "#000000", "numbers: the order in time; NAT: headers rewritten there", "")
}

// nodes frames each node's boxes in a merged trace and marks the wire between them.
func (d drawing) nodes(l *layout) {
	if len(l.nodes) < 2 {
		return
	}
	var frames [][2]float64
	for _, n := range l.nodes {
		x0, x1 := math.Inf(1), math.Inf(-1)
		for _, b := range l.boxes {
			if b.key.node == n {
				x0, x1 = min(x0, b.x-halfOut(b, -1)), max(x1, b.x+b.w+halfOut(b, 1))
			}
		}
		x0, x1 = x0-nodePad, x1+nodePad
		frames = append(frames, [2]float64{x0, x1})
		y := l.boxes[0].y - 20 - nodePad
		h := l.boxes[0].h + 20 + 2*nodePad
		d.f(`<rect x="%s" y="%s" width="%s" height="%s" rx="12" fill="#f6f6f6" stroke="%s" stroke-width="1.2" stroke-dasharray="3 3"/>`+"\n",
			num(x0), num(y), num(x1-x0), num(h), inkFaint)
		d.text(x0+12, y+20, fontSize+1, "start", inkBox, "node: "+n, ` font-weight="bold"`)
	}
	for i := 1; i < len(frames); i++ {
		mid := (frames[i-1][1] + frames[i][0]) / 2
		d.text(mid, l.boxes[0].y+24, fontSize-1, "middle", inkFaint, "the wire", ` font-style="italic"`)
	}
}

func (l *layout) devicesInOrder() []*device {
	var out []*device
	seen := map[*device]bool{}
	add := func(dv *device) {
		if dv != nil && !seen[dv] {
			seen[dv] = true
			out = append(out, dv)
		}
	}
	for _, a := range l.arrows {
		add(a.from.dev)
		add(a.to.dev)
	}
	for _, b := range l.boxes {
		for _, nt := range b.note {
			add(nt.dev)
		}
	}
	return out
}

// ends are where an arrow between two stops starts and ends: on the devices' sides facing
// each other, the request a little above the middle and the reply below.
func ends(a *arrow) (x1, y1, x2, y2 float64) {
	x1, y1 = a.from.point()
	x2, y2 = a.to.point()
	dy := -6.0
	if a.flow == trace.Reply {
		dy = 6
	}
	y1, y2 = y1+dy, y2+dy
	dir := 1.0
	if x2 < x1 {
		dir = -1
	}
	if a.from.dev != nil {
		x1 += dir * a.from.dev.w / 2
	}
	if a.to.dev != nil {
		x2 -= dir * (a.to.dev.w/2 + 2)
	}
	return x1, y1, x2, y2
}

func (d drawing) arrow(a *arrow) {
	x1, y1, x2, y2 := ends(a)
	ink, dash, head := inkRequest, "", "req"
	if a.flow == trace.Reply {
		ink, dash, head = inkReply, ` stroke-dasharray="8 5"`, "rep"
	}
	if a.from.dev != nil && a.to.dev != nil && a.from.dev.side == a.to.dev.side && a.from.box == a.to.box && a.from.dev.side != 0 {
		// Two devices on one edge: the way curves through the box.
		in := -float64(a.from.dev.side) * 70
		fx := a.from.dev.x - float64(a.from.dev.side)*a.from.dev.w/2
		tx := a.to.dev.x - float64(a.to.dev.side)*(a.to.dev.w/2+2)
		d.f(`<path d="M%s,%s C%s,%s %s,%s %s,%s" fill="none" stroke="%s" stroke-width="2.5"%s marker-end="url(#head-%s)"/>`+"\n",
			num(fx), num(y1), num(fx+in), num(y1), num(tx+in), num(y2), num(tx), num(y2), ink, dash, head)
		return
	}
	d.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5"%s marker-end="url(#head-%s)"/>`+"\n",
		num(x1), num(y1), num(x2), num(y2), ink, dash, head)
}

// arrowLabels writes an arrow's number at its middle, and its NAT rewrite above (request) or
// below (reply) it.
func (d drawing) arrowLabels(a *arrow) {
	x1, y1, x2, y2 := ends(a)
	// The request's number a little before the middle, the reply's a little after: apart.
	at := 0.42
	if a.flow == trace.Reply {
		at = 0.58
	}
	mx, my := x1+(x2-x1)*at, y1+(y2-y1)*at
	if a.from.dev != nil && a.to.dev != nil && a.from.dev.side == a.to.dev.side && a.from.box == a.to.box && a.from.dev.side != 0 {
		mx = a.from.dev.x - float64(a.from.dev.side)*(a.from.dev.w/2+52)
	}
	ink := inkRequest
	if a.flow == trace.Reply {
		ink = inkReply
	}
	d.f(`<circle cx="%s" cy="%s" r="9" fill="#ffffff" stroke="%s" stroke-width="1.5"/>`+"\n", num(mx), num(my), ink)
	d.text(mx, my+4, fontSize-2, "middle", ink, strconv.Itoa(a.n), ` font-weight="bold"`)
	if a.label != "" {
		ly := my - 14
		if a.flow == trace.Reply {
			ly = my + 23
		}
		d.text(mx, ly, fontSize-1, "middle", ink, a.label, halo+` font-weight="bold"`)
	}
}

func (d drawing) cross(x, y, r float64, id string) {
	attr := ""
	if id != "" {
		attr = ` id="` + id + `"`
	}
	d.f(`<g%s transform="translate(%s,%s)"><path d="M%s,%s L%s,%s M%s,%s L%s,%s" stroke="%s" stroke-width="4.5" stroke-linecap="round"/></g>`+"\n",
		attr, num(x), num(y), num(-r), num(-r), num(r), num(r), num(-r), num(r), num(r), num(-r), inkDrop)
}

func (d drawing) note(nt note) {
	ink := inkGood
	switch nt.kind {
	case trace.Dropped:
		ink = inkDrop
		d.cross(nt.mx, nt.my, 11, DropMarkID)
	case trace.Delivered:
		d.f(`<circle cx="%s" cy="%s" r="6" fill="%s"/>`+"\n", num(nt.mx), num(nt.my), ink)
	default:
		ink = inkBox
	}
	for i, s := range nt.lines {
		weight := ""
		if i == 0 {
			weight = ` font-weight="bold"`
		}
		d.text(nt.tx, nt.ty+float64(i)*17, fontSize, "middle", ink, s, weight)
	}
}
