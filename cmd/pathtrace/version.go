package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pathtrace's version and the image kubectl pathtrace pairs with this build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pathtrace version %s\nimage %s\n", buildinfo.Version(), buildinfo.Image())
			return err
		},
	}
}
