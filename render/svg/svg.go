// Package svg draws a trace's journey as a self-contained SVG picture.
package svg

import (
	"io"

	"github.com/pathtrace/pathtrace/trace"
)

// Write draws t.
func Write(w io.Writer, t *trace.Trace) error {
	_, err := io.WriteString(w, "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n")
	return err
}
