package text

import (
	"encoding/binary"
	"unicode"
	"unicode/utf8"
)

type style int

const (
	plain style = iota
	bold
	alarm // drops, failures, lost events: the lines the eye must land on
	good
	warn
)

var sgr = [...]string{bold: "\x1b[1m", alarm: "\x1b[1;31m", good: "\x1b[32m", warn: "\x1b[33m"}

const reset = "\x1b[0m"

// block is one part of the output, built in memory and written at once. Every string goes
// through put, which strips control characters: names in a saved trace come from a file and
// must not be able to move the cursor or recolour the terminal. A Printer reuses one block, so
// that a packet's block, printed for every packet of a busy flow, allocates nothing once its
// buffers have grown.
type block struct {
	buf   []byte
	color bool

	// The table being built (see row): the texts of its cells and tails are appended to txt
	// and named by ranges of it.
	txt    []byte
	cells  []tcell
	tails  []tspan
	rows   []trow
	widths []int
}

type tcell struct {
	piece
	st    style
	right bool // numbers: right-aligned so their decimal points line up
}

type tspan struct {
	piece
	st style
}

// piece is txt[from:to], its width in runes, and whether it is plain printable ASCII, which is
// written as it is.
type piece struct {
	from, to, width int
	ascii           bool
}

func (b *block) pieceFrom(from int) piece {
	s := b.txt[from:]
	if !printableASCII(s) {
		return piece{from: from, to: len(b.txt), width: utf8.RuneCount(s)}
	}
	return piece{from: from, to: len(b.txt), width: len(s), ascii: true}
}

// trow is where a row's cells and tails start in cells and tails; each ends where the next
// row's start.
type trow struct{ cell, tail int }

// maxKept bounds the buffers a block keeps between uses: a summary of a thousand flows need
// not stay allocated for the rest of the run.
const maxKept = 64 << 10

func (b *block) reset() {
	if cap(b.buf) > maxKept || cap(b.txt) > maxKept {
		*b = block{color: b.color}
		return
	}
	b.buf, b.txt = b.buf[:0], b.txt[:0]
	b.cells, b.tails, b.rows, b.widths = b.cells[:0], b.tails[:0], b.rows[:0], b.widths[:0]
}

func (b *block) put(st style, s string) { b.buf = appendStyled(b.buf, b.color, st, s) }

// putTxt puts txt[from:] and takes it off txt: a span assembled there.
func (b *block) putTxt(st style, from int) {
	b.buf = appendStyledBytes(b.buf, b.color, st, b.txt[from:])
	b.txt = b.txt[:from]
}

func appendStyled(buf []byte, color bool, st style, s string) []byte {
	if color && st != plain && len(s) > 0 {
		buf = append(buf, sgr[st]...)
		buf = appendPrintable(buf, s)
		return append(buf, reset...)
	}
	return appendPrintable(buf, s)
}

func appendStyledBytes(buf []byte, color bool, st style, s []byte) []byte {
	if printableASCII(s) {
		if color && st != plain && len(s) > 0 {
			return append(append(append(buf, sgr[st]...), s...), reset...)
		}
		return append(buf, s...)
	}
	return appendStyled(buf, color, st, string(s)) // rare: non-ASCII or a control
}

func (b *block) text(s string) { b.put(plain, s) }

func (b *block) nl() { b.buf = append(b.buf, '\n') }

// line writes indent, then spans, then a newline.
func (b *block) line(indent string, spans ...span) {
	b.text(indent)
	for _, s := range spans {
		b.put(s.st, s.s)
	}
	b.nl()
}

type span struct {
	s  string
	st style
}

func sp(s string) span               { return span{s: s} }
func styled(st style, s string) span { return span{s: s, st: st} }

// cell is one column of an aligned row.
type cell struct {
	s     string
	st    style
	right bool // numbers: right-aligned so their decimal points line up
}

// table writes rows with columns padded to the widest cell, two spaces apart (see
// writeTable).
func (b *block) table(indent string, rows [][]cell, tails [][]span) {
	for ri, r := range rows {
		b.row()
		for _, c := range r {
			from := len(b.txt)
			b.txt = append(b.txt, c.s...)
			b.cell(from, c.st, c.right)
		}
		if ri < len(tails) {
			for _, s := range tails[ri] {
				from := len(b.txt)
				b.txt = append(b.txt, s.s...)
				b.tail(from, s.st)
			}
		}
	}
	b.writeTable(indent)
}

// row starts a row of the table being built; cell and tail add to it what txt holds from
// from on.
func (b *block) row() { b.rows = append(b.rows, trow{cell: len(b.cells), tail: len(b.tails)}) }

func (b *block) cell(from int, st style, right bool) { b.addCell(b.pieceFrom(from), st, right) }

// asciiCell is cell for a text known to be printable ASCII (digits, a fixed word).
func (b *block) asciiCell(from int, st style, right bool) {
	b.addCell(piece{from: from, to: len(b.txt), width: len(b.txt) - from, ascii: true}, st, right)
}

func (b *block) addCell(t piece, st style, right bool) {
	col := len(b.cells) - b.rows[len(b.rows)-1].cell
	if col == len(b.widths) {
		b.widths = append(b.widths, 0)
	}
	b.widths[col] = max(b.widths[col], t.width)
	b.cells = append(b.cells, tcell{piece: t, st: st, right: right})
}

func (b *block) tail(from int, st style) {
	b.tails = append(b.tails, tspan{piece: b.pieceFrom(from), st: st})
}

// putPiece writes t, styled.
func (b *block) putPiece(st style, t piece) {
	s := b.txt[t.from:t.to]
	if !t.ascii {
		b.buf = appendStyledBytes(b.buf, b.color, st, s)
		return
	}
	if b.color && st != plain && len(s) > 0 {
		b.buf = append(append(append(b.buf, sgr[st]...), s...), reset...)
		return
	}
	b.buf = append(b.buf, s...)
}

// tailsOf is how many tail spans the last row has so far.
func (b *block) tailsOf() int { return len(b.tails) - b.rows[len(b.rows)-1].tail }

// writeTable writes the rows built, with columns padded to the widest cell, two spaces apart,
// and forgets them. Padding is computed on the plain text, so columns line up the same with
// and without colour, and the last cell of a row is never padded, so lines carry no trailing
// blanks.
func (b *block) writeTable(indent string) {
	widths := b.widths // the widest cell of each column, kept as cells were added
	for ri := range b.rows {
		cells, tail := b.rowAt(ri)
		last := len(cells) - 1
		for last >= 0 && cells[last].from == cells[last].to && len(tail) == 0 {
			last--
		}
		b.put(plain, indent)
		for i := 0; i <= last; i++ {
			c := &cells[i]
			gap := widths[i] - c.width
			more := i < last || len(tail) > 0
			if c.right {
				b.pad(gap)
				gap = 0
			}
			b.putPiece(c.st, c.piece)
			switch {
			case more && !c.right:
				b.pad(gap + 2) // padded, then two spaces apart
			case more:
				b.buf = append(b.buf, "  "...)
			}
		}
		for i := range tail {
			b.putPiece(tail[i].st, tail[i].piece)
		}
		b.nl()
	}
	b.txt, b.cells, b.tails, b.rows, b.widths = b.txt[:0], b.cells[:0], b.tails[:0], b.rows[:0], b.widths[:0]
}

func (b *block) rowAt(i int) ([]tcell, []tspan) {
	c0, t0 := b.rows[i].cell, b.rows[i].tail
	c1, t1 := len(b.cells), len(b.tails)
	if i+1 < len(b.rows) {
		c1, t1 = b.rows[i+1].cell, b.rows[i+1].tail
	}
	return b.cells[c0:c1], b.tails[t0:t1]
}

func (b *block) pad(n int) {
	for n > len(spaces) {
		b.buf = append(b.buf, spaces...)
		n -= len(spaces)
	}
	b.buf = append(b.buf, spaces[:max(n, 0)]...)
}

const spaces = "                                "

// appendPrintable appends s with control characters (ESC, CR, newline, C1 controls) and
// invalid UTF-8 replaced by '?', one rune per rune so that widths do not change.
func appendPrintable(dst []byte, s string) []byte {
	if !printableASCIIString(s) {
		return appendPrintableRunes(dst, s) // rare: non-ASCII or a control
	}
	return append(dst, s...)
}

// printableASCII says whether s is all printable ASCII (0x20 to 0x7e), looking at 8 bytes at a
// time.
func printableASCII(s []byte) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if !printable8(binary.LittleEndian.Uint64(s[i:])) {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func printableASCIIString(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if !printable8(x) {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// printable8 says whether the 8 bytes of x are all printable ASCII.
func printable8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := (x - 0x20*ones) & ^x & highs // a byte below 0x20 (exact as to whether any is)
	del := x ^ 0x7f*ones
	return control|(del-ones)&^del&highs|x&highs == 0
}

func appendPrintableRunes(dst []byte, s string) []byte {
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			r = '?'
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}
