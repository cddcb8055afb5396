package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/analysis/merge"
	"github.com/pathtrace/pathtrace/internal/run"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
)

func newMergeCmd() *cobra.Command {
	var colorMode, jsonPath, pcapngPath, svgPath string
	var maxPackets int
	cmd := &cobra.Command{
		Use:   "merge A.json B.json [C.json...]",
		Short: "Join the traces of one flow taken on several nodes into one journey (no privileges needed)",
		Long: `merge joins traces of the same flow (the same --src/--dst/--proto), taken at the same time on
the nodes the flow crosses, into one journey: a packet seen leaving one node and arriving on the
next is one packet, its hops labelled with the node that saw them. Packets are matched by their
headers (IP ID, ICMP id and sequence, TCP sequence and ports; inner headers in a tunnel), and the
nodes' clock skew is estimated from packets going both ways. The first trace's clock is the
reference. The merged trace re-renders with 'pathtrace show'.

merge holds the packets it matches in memory: at most --max-packets of all the traces, those that
began first; past it the header says what was left out.`,
		Example: `  pathtrace merge node-a.json node-b.json --json journey.json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("merge needs the traces of at least two nodes, got %d", len(args))
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			color, err := colorFor(colorMode, os.Stdout)
			if err != nil {
				return err
			}
			if maxPackets <= 0 {
				return fmt.Errorf("--max-packets must be positive, got %d", maxPackets)
			}
			streams := make([]merge.Stream, len(args))
			for i, path := range args {
				r, err := jsontrace.OpenFile(path)
				if err != nil {
					return err
				}
				defer r.Close()
				streams[i] = r
			}
			// The files are read one after the other, holding the maxPackets of their packets
			// that began first.
			inputs, cut, err := merge.Gather(args, streams, maxPackets)
			if err != nil {
				return err
			}
			merged, report, err := merge.Merge(inputs...)
			if err != nil {
				return err
			}
			merged.Meta.Args = append([]string{"merge"}, args...)
			if cut != nil {
				merged.Meta.Degraded = append(merged.Meta.Degraded, cut.String())
			}
			if jsonPath != "" {
				if err := run.SaveTrace(jsonPath, merged); err != nil {
					return err
				}
			}
			if err := run.WriteArtifacts(pcapngPath, svgPath, merged); err != nil {
				return err
			}
			if err := text.Render(os.Stdout, merged, text.Options{Color: color}); err != nil {
				return err
			}
			_, err = fmt.Fprintf(os.Stdout, "\n%s\n", report)
			return err
		},
	}
	cmd.Flags().StringVar(&jsonPath, "json", "", "write the merged trace as JSON to this file")
	cmd.Flags().IntVar(&maxPackets, "max-packets", merge.DefaultMaxPackets, "hold at most this many packets of all the traces: past it, only the packets that began earlier are merged")
	cmd.Flags().StringVar(&colorMode, "color", "auto", "colour: auto (on a terminal), always, never")
	cmd.Flags().StringVar(&pcapngPath, pcapngFlag, "", pcapngUsage+": every node's hops, on the first node's clock (the traces must have been taken with --pcapng)")
	cmd.Flags().StringVar(&svgPath, svgFlag, "", svgUsage+": a column per node")
	return cmd
}
