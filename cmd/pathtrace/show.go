package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/run"
	"github.com/pathtrace/pathtrace/render/jsontrace"
	"github.com/pathtrace/pathtrace/render/text"
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
			t, err := jsontrace.ReadFile(args[0])
			if err != nil {
				return err
			}
			if err := run.WriteArtifacts(pcapngPath, svgPath, t); err != nil {
				return err
			}
			return text.Render(os.Stdout, t, text.Options{Color: color})
		},
	}
	cmd.Flags().StringVar(&colorMode, "color", "auto", "colour: auto (on a terminal), always, never")
	cmd.Flags().StringVar(&pcapngPath, pcapngFlag, "", pcapngUsage+" (the trace must have been taken with --pcapng)")
	cmd.Flags().StringVar(&svgPath, svgFlag, "", svgUsage)
	return cmd
}
