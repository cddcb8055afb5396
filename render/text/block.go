package text

import (
	"strings"
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
// must not be able to move the cursor or recolour the terminal.
type block struct {
	buf   strings.Builder
	color bool
}

func (b *block) put(st style, s string) {
	s = printable(s)
	if b.color && st != plain && s != "" {
		b.buf.WriteString(sgr[st])
		b.buf.WriteString(s)
		b.buf.WriteString(reset)
		return
	}
	b.buf.WriteString(s)
}

func (b *block) text(s string) { b.put(plain, s) }

func (b *block) nl() { b.buf.WriteByte('\n') }

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

// table writes rows with columns padded to the widest cell, two spaces apart. Padding is
// computed on the plain text, so columns line up the same with and without colour, and the
// last cell of a row is never padded, so lines carry no trailing blanks.
func (b *block) table(indent string, rows [][]cell, tails [][]span) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(c.s))
		}
	}
	for ri, r := range rows {
		var tail []span
		if ri < len(tails) {
			tail = tails[ri]
		}
		last := len(r) - 1
		for last >= 0 && r[last].s == "" && len(tail) == 0 {
			last--
		}
		b.text(indent)
		for i := 0; i <= last; i++ {
			c := r[i]
			gap := widths[i] - width(c.s)
			if c.right {
				b.text(strings.Repeat(" ", gap))
			}
			b.put(c.st, c.s)
			if !c.right && (i < last || len(tail) > 0) {
				b.text(strings.Repeat(" ", gap))
			}
			if i < last || len(tail) > 0 {
				b.text("  ")
			}
		}
		for _, s := range tail {
			b.put(s.st, s.s)
		}
		b.nl()
	}
}

func width(s string) int { return utf8.RuneCountInString(printable(s)) }

// printable replaces control characters (ESC, CR, newline, C1 controls) with '?', keeping
// one rune per rune so that widths do not change.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}
