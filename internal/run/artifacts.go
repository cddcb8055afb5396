package run

import (
	"fmt"
	"io"

	"github.com/pathtrace/pathtrace/render/pcapng"
	"github.com/pathtrace/pathtrace/render/svg"
	"github.com/pathtrace/pathtrace/trace"
)

// writeArtifacts writes the postmortem artifacts a run was asked for (--pcapng, --svg) from
// t and the packets it kept.
func writeArtifacts(pcapngPath, svgPath string, t *trace.Trace, kept *keptPackets) error {
	a := NewArtifacts(pcapngPath, svgPath)
	if !a.Wanted() {
		return nil
	}
	if err := kept.each(a.Add); err != nil {
		return fmt.Errorf("read back the trace's packets: %w", err)
	}
	return a.Write(t)
}

// WriteArtifacts writes t as a pcapng capture to pcapngPath and as an SVG picture to svgPath,
// each whole or not at all; "" skips it. `pathtrace merge` writes them so.
func WriteArtifacts(pcapngPath, svgPath string, t *trace.Trace) error {
	return writeEach(pcapngPath, svgPath, t, pcapng.Write, svg.Write)
}

// Artifacts collects packets one at a time, as they are read, for a capture and a picture
// (`pathtrace show` of a trace of any size).
type Artifacts struct {
	pcapngPath, svgPath string
	capture             pcapng.Capture
	picture             svg.Picture
}

// NewArtifacts writes a capture to pcapngPath and a picture to svgPath; "" skips it.
func NewArtifacts(pcapngPath, svgPath string) *Artifacts {
	return &Artifacts{pcapngPath: pcapngPath, svgPath: svgPath}
}

// Wanted says whether any artifact was asked for.
func (a *Artifacts) Wanted() bool { return a.pcapngPath != "" || a.svgPath != "" }

// Add takes the next packet; the picture may keep p itself.
func (a *Artifacts) Add(p *trace.Packet) {
	if a.pcapngPath != "" {
		a.capture.Add(p)
	}
	if a.svgPath != "" {
		a.picture.Add(p)
	}
}

// Write writes the artifacts of the packets added, with t's meta and verdict.
func (a *Artifacts) Write(t *trace.Trace) error {
	return writeEach(a.pcapngPath, a.svgPath, t, a.capture.Write, a.picture.Write)
}

type writeFunc func(io.Writer, *trace.Trace) error

func writeEach(pcapngPath, svgPath string, t *trace.Trace, capture, picture writeFunc) error {
	for _, a := range []struct {
		path  string
		write writeFunc
	}{{pcapngPath, capture}, {svgPath, picture}} {
		if a.path == "" {
			continue
		}
		out, err := openOutput(a.path)
		if err != nil {
			return err
		}
		if err := a.write(out.f, t); err != nil {
			out.abort()
			return fmt.Errorf("write %s: %w", a.path, err)
		}
		if err := out.commit(); err != nil {
			return err
		}
	}
	return nil
}
