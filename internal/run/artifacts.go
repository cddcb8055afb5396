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
	if pcapngPath == "" && svgPath == "" {
		return nil
	}
	var capture pcapng.Capture
	var picture svg.Picture
	err := kept.each(func(p *trace.Packet) {
		if pcapngPath != "" {
			capture.Add(p)
		}
		picture.Add(p)
	})
	if err != nil {
		return fmt.Errorf("read back the trace's packets: %w", err)
	}
	return writeEach(pcapngPath, svgPath, t, capture.Write, picture.Write)
}

// WriteArtifacts writes t as a pcapng capture to pcapngPath and as an SVG picture to svgPath,
// each whole or not at all; "" skips it. `pathtrace show` and `merge` write them so too.
func WriteArtifacts(pcapngPath, svgPath string, t *trace.Trace) error {
	return writeEach(pcapngPath, svgPath, t, pcapng.Write, svg.Write)
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
