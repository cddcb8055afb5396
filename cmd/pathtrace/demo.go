package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/demo"
	"github.com/pathtrace/pathtrace/internal/privilege"
)

func newDemoCmd() *cobra.Command {
	var colorMode, jsonPath, pcapngPath, svgPath string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build a throwaway lab (network namespaces), break it, trace it and explain it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			color, err := colorFor(colorMode, os.Stdout)
			if err != nil {
				return err
			}
			if err := privilege.Check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = demo.Run(ctx, demo.Options{Out: os.Stdout, Color: color, JSONPath: jsonPath,
				PcapngPath: pcapngPath, SVGPath: svgPath, Args: os.Args[1:]})
			return err
		},
	}
	cmd.Flags().StringVar(&colorMode, "color", "auto", "colour: auto (on a terminal), always, never")
	cmd.Flags().StringVar(&jsonPath, "json", "", "write the demo's trace as JSON to this file")
	cmd.Flags().StringVar(&pcapngPath, pcapngFlag, "", pcapngUsage)
	cmd.Flags().StringVar(&svgPath, svgFlag, "", svgUsage)
	return cmd
}
