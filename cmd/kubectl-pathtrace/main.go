// Command kubectl-pathtrace is pathtrace as a kubectl plugin: it finds the nodes a flow crosses
// through the Kubernetes API, runs pathtrace in a privileged pod on each (the shape of
// `kubectl debug node --profile=sysadmin`), streams their output, collects their traces from
// the pods' logs, merges them into one journey and prints the verdict. Every ending deletes the
// pods it made.
//
// It talks to the API with pathtrace's small REST client (internal/kube), not client-go: the
// plugin needs eight requests, and client-go would add some 37 MB to a 26 MB binary.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pathtrace/pathtrace/internal/buildinfo"
)

type options struct {
	Kubeconfig, Context, Namespace string

	Src, Dst, Proto, Sport, Dport string
	Node                          []string
	Duration                      time.Duration
	Count                         int
	Probe                         string
	ProbeCount                    int
	JSON                          string
	Image                         string
	Color                         string
	Timeout                       time.Duration
	CRISocket                     string
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl pathtrace: "+err.Error())
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "kubectl pathtrace --src NS/POD --dst ADDR|NS/POD [flags]",
		Short: "Trace a flow through the nodes it crosses, from kubectl",
		Long: `kubectl pathtrace runs pathtrace on the nodes a flow crosses: the source pod's node, and the
destination pod's when it is a pod on another node (--node chooses them). On each it starts a
privileged pod (hostPID, hostNetwork, the node's / at /host, pinned to the node, labelled
app.kubernetes.io/managed-by=kubectl-pathtrace, deleted at the end and at worst after its
activeDeadlineSeconds), streams its output, and at the end merges the nodes' traces into one
journey and prints the verdict. --probe sends the flow from the source pod's network namespace.`,
		Example: `  kubectl pathtrace --src default/web --dst 8.8.8.8 --proto icmp --probe icmp
  kubectl pathtrace --src default/web --dst kube-system/coredns-7c9 --proto udp --dport 53 --probe dns
  kubectl pathtrace --node worker-3 --src 10.244.3.7 --dst 10.96.0.10 --duration 30s --json incident.json
  kubectl pathtrace cleanup`,
		Version:       buildinfo.Version(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
	pf.StringVar(&o.Context, "context", "", "the kubeconfig context to use")
	pf.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of pods named without one, and where pathtrace's pods run (default: the context's, else default)")
	fl := cmd.Flags()
	fl.StringVar(&o.Src, "src", "", "source: NS/POD, POD (in -n), an address or CIDR")
	fl.StringVar(&o.Dst, "dst", "", "destination: NS/POD, POD (in -n), an address or CIDR")
	fl.StringVar(&o.Proto, "proto", "", "protocol: icmp, tcp, udp, icmpv6 or a number")
	fl.StringVar(&o.Sport, "sport", "", "source port (tcp/udp)")
	fl.StringVar(&o.Dport, "dport", "", "destination port (tcp/udp)")
	fl.StringSliceVar(&o.Node, "node", nil, "trace on these nodes (default: the pods' nodes)")
	fl.DurationVar(&o.Duration, "duration", 0, "stop after this long (default: 5s after the probes with --probe, else until Ctrl-C)")
	fl.IntVar(&o.Count, "count", 0, "stop after this many packets on a node")
	fl.StringVar(&o.Probe, "probe", "", "send the flow: icmp, tcp, udp or dns, from the source pod's network namespace")
	fl.IntVar(&o.ProbeCount, "probe-count", 5, "how many probe packets, one every 200ms")
	fl.StringVar(&o.JSON, "json", "", "write the (merged) trace as JSON to this file")
	fl.StringVar(&o.Image, "image", buildinfo.Image(), "pathtrace's image, present on the nodes or pullable by them")
	fl.StringVar(&o.Color, "color", "auto", "colour: auto (on a terminal), always, never")
	fl.StringVar(&o.CRISocket, "cri-socket", "", "the nodes' CRI socket when it is not containerd's or CRI-O's usual one (a path on the node)")
	fl.DurationVar(&o.Timeout, "start-timeout", 2*time.Minute, "how long a pathtrace pod may take to start")
	// --version and `version` say which build this is and which image it runs on the nodes.
	cmd.SetVersionTemplate(versionText())
	cmd.AddCommand(newCleanupCmd(&o), &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the image it runs on the nodes by default (--image)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText())
			return err
		},
	})
	cmd.SetContext(context.Background())
	return cmd
}

func versionText() string {
	return "kubectl-pathtrace version " + buildinfo.Version() + "\nimage " + buildinfo.Image() + "\n"
}

func newCleanupCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Delete every pathtrace pod kubectl pathtrace left behind, in every namespace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := loadAPI(*o)
			if err != nil {
				return err
			}
			n, err := cleanup(cmd.Context(), api, "")
			if err != nil {
				return err
			}
			fmt.Printf("deleted %d pathtrace pod(s)\n", n)
			return nil
		},
	}
}
