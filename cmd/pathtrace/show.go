package main

import (
	"bufio"
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/run"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

func newShowCmd() *cobra.Command {
	var colorMode, pcapngPath, svgPath string
	cmd := &cobra.Command{
		Use:   "show TRACE.json",
		Short: "Print a saved trace as the live run did (no privileges needed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			color, err := colorFor(colorMode, os.Stdout)
			if err != nil {
				return err
			}
			// Each packet is printed as it is read and then let go: a trace of any size is shown
			// in the memory of one packet (jsontrace.MaxValueBytes at most). The header waits for
			// the first packet, so that a file broken before it prints only the error; one broken
			// later prints the packets before the break, then the error. A capture or picture
			// asked for keeps what it needs of each packet (its hops' bytes; the packets drawn).
			art := run.NewArtifacts(pcapngPath, svgPath)
			out := bufio.NewWriterSize(os.Stdout, 64<<10)
			p := text.NewPrinter(out, text.Options{Color: color})
			var head *trace.Trace
			n := 0
			t, err := jsontrace.ScanFile(args[0], func(h *trace.Trace) error {
				head = h
				return nil
			}, func(pk *trace.Packet) error {
				if n == 0 {
					p.Header(head)
				}
				p.Packet(*pk)
				art.Add(pk)
				n++
				return p.Err()
			})
			if err == nil {
				if n == 0 {
					p.Header(t)
				}
				p.SummaryOf(t, n)
				err = p.Err()
			}
			if ferr := out.Flush(); err == nil {
				err = ferr
			}
			if err == nil {
				err = art.Write(t)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&colorMode, "color", "auto", "colour: auto (on a terminal), always, never")
	cmd.Flags().StringVar(&pcapngPath, pcapngFlag, "", pcapngUsage+" (the trace must have been taken with --pcapng)")
	cmd.Flags().StringVar(&svgPath, svgFlag, "", svgUsage)
	return cmd
}
