// Package text renders a trace for a person at a terminal. The live run and `pathtrace show`
// both go through Printer, so a saved trace re-renders to exactly the text printed live.
package text

import (
	"io"
	"os"

	"github.com/pathtrace/pathtrace/trace"
)

// Options controls rendering.
type Options struct {
	// Color adds ANSI colour. Set it from AutoColor(os.Stdout), never unconditionally.
	Color bool
}

// Printer writes the three parts of a run's output as they become known: Header once, a
// Packet block as each packet completes, and Summary at the end. It keeps no state between
// calls, so the text of a part depends only on that part's inputs.
type Printer struct {
	w    io.Writer
	opts Options
	err  error
	blk  block // reused: only its buffers outlive a call
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer, opts Options) *Printer {
	return &Printer{w: w, opts: opts, blk: block{color: opts.Color}}
}

// Err is the first error the writer returned. Once set, the Printer writes nothing more.
func (p *Printer) Err() error { return p.err }

// flush writes one part with a single Write, so a live packet block is not split by output
// from elsewhere (a log line on stderr sharing the terminal).
func (p *Printer) flush(b *block) {
	if p.err != nil || len(b.buf) == 0 {
		return
	}
	_, p.err = p.w.Write(b.buf)
}

func (p *Printer) newBlock() *block {
	p.blk.reset()
	return &p.blk
}

// Render prints a whole trace: the header, every packet in order, then the summary.
func Render(w io.Writer, t *trace.Trace, opts Options) error {
	p := NewPrinter(w, opts)
	p.Header(t)
	for _, pk := range t.Packets {
		p.Packet(pk)
	}
	p.Summary(t)
	return p.Err()
}

// AutoColor says whether output to f should be coloured: only on a terminal, and not when
// the user opted out with NO_COLOR (https://no-color.org: any non-empty value) or TERM=dumb.
func AutoColor(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return IsTerminal(f)
}
