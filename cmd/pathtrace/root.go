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
	"github.com/pathtrace/pathtrace/internal/kube/hostenv"
	"github.com/pathtrace/pathtrace/internal/run"
	"github.com/pathtrace/pathtrace/render/text"
	"github.com/pathtrace/pathtrace/trace"
)

// flags maps 1:1 to the command line: Filter* choose the flow, Output* where results go.
type flags struct {
	FilterSrc   string
	FilterDst   string
	FilterProto string
	FilterSport string
	FilterDport string

	Duration time.Duration
	Count    int

	OutputJSON   string
	OutputColor  string
	OutputRecord string
	OutputPcapng string
	OutputSVG    string

	ReadyFile  string
	KernelBTF  string
	NoNFTrace  bool
	RingBuffer uint32
	MaxPackets int
	MaxRate    int
	Backend    string
	NetnsScope []string
	CRISocket  string

	Probe      string
	ProbeCount int
	ProbeName  string
	EmitJSON   bool
}

// filter parses the flow as typed. A pod side has no address yet (setupPods gives it one):
// the filter returned checks everything else, and is made again once the pods are resolved.
func (f *flags) filter() (src, dst endpoint, _ trace.Filter, err error) {
	if src, err = parseEndpoint("--src", f.FilterSrc); err != nil {
		return src, dst, trace.Filter{}, err
	}
	if dst, err = parseEndpoint("--dst", f.FilterDst); err != nil {
		return src, dst, trace.Filter{}, err
	}
	proto, err := trace.ParseProto(f.FilterProto)
	if err != nil {
		return src, dst, trace.Filter{}, fmt.Errorf("--proto: %w", err)
	}
	sport, err := trace.ParsePort(f.FilterSport)
	if err != nil {
		return src, dst, trace.Filter{}, fmt.Errorf("--sport: %w", err)
	}
	dport, err := trace.ParsePort(f.FilterDport)
	if err != nil {
		return src, dst, trace.Filter{}, fmt.Errorf("--dport: %w", err)
	}
	filter, err := trace.NewFilter(src.prefix, dst.prefix, proto, sport, dport)
	return src, dst, filter, err
}

func colorFor(mode string, out *os.File) (bool, error) {
	switch mode {
	case "auto", "":
		return text.AutoColor(out), nil
	case "always":
		return true, nil
	case "never":
		return false, nil
	}
	return false, fmt.Errorf("--color: want auto, always or never, not %q", mode)
}

func newRootCmd() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "pathtrace --src ADDR --dst ADDR [flags]",
		Short: "Follow one flow through this node's kernel and say where and why it was dropped",
		Long: `pathtrace attaches eBPF programs to the kernel's networking tracepoints and follows the
packets of one flow (both directions) through every device and network namespace on this node.
Each packet is printed as it completes, with its fate: delivered, left the host, or dropped with
the kernel's drop reason and location. The run ends on --duration, --count, Ctrl-C or SIGTERM
with a per-flow summary and a verdict.`,
		Example: `  pathtrace --src 10.244.1.5 --dst 8.8.8.8 --proto icmp --duration 30s --json trace.json
  pathtrace --src default/web --dst 8.8.8.8 --proto icmp
  pathtrace --dst 10.96.0.10 --proto udp --dport 53 --count 10
  pathtrace show trace.json
  pathtrace demo`,
		Version:       buildinfo.Version(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, dst, filter, err := f.filter()
			if err != nil {
				return err
			}
			if f.Duration < 0 {
				return fmt.Errorf("--duration must not be negative, got %s", f.Duration)
			}
			if f.RingBuffer != 0 && (f.RingBuffer < 4096 || f.RingBuffer&(f.RingBuffer-1) != 0) {
				return fmt.Errorf("--ring-buffer must be a power of two of at least 4096, got %d", f.RingBuffer)
			}
			switch f.Backend {
			case "auto", "fentry", "kprobe", "tracepoint":
			default:
				return fmt.Errorf("--backend: want auto, fentry, kprobe or tracepoint, not %q", f.Backend)
			}
			if f.MaxPackets < 0 {
				return fmt.Errorf("--max-packets must not be negative, got %d", f.MaxPackets)
			}
			if f.MaxRate < 0 || f.MaxRate > 1e9 {
				return fmt.Errorf("--max-rate must be from 0 (no limit) to 1000000000, got %d", f.MaxRate)
			}
			if f.Count < 0 {
				return fmt.Errorf("--count must not be negative, got %d", f.Count)
			}
			color, err := colorFor(f.OutputColor, os.Stdout)
			if err != nil {
				return err
			}
			env, err := hostenv.Detect()
			if err != nil {
				return err
			}
			// Before the runtime is asked: without privilege its socket refuses us too, and
			// "needs root" is the error that says what to do.
			if err := env.CheckPrivilege(); err != nil {
				return err
			}
			pods, err := setupPods(cmd.Context(), env, f.CRISocket, &src, &dst)
			if err != nil {
				return err
			}
			defer pods.Close()
			if filter, err = trace.NewFilter(src.prefix, dst.prefix, filter.Proto, filter.Sport, filter.Dport); err != nil {
				return err
			}
			if f.KernelBTF == "" {
				if f.KernelBTF, err = env.BTF(); err != nil {
					return err
				}
			}
			var labeller interface{ Label(*trace.Packet) }
			if pods.labeller != nil {
				labeller = pods.labeller
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			probe, err := f.prober(env, src, dst, filter, pods.pods)
			if err != nil {
				return err
			}
			_, err = run.Run(ctx, run.Options{
				Probe:      probe,
				ProbeLog:   os.Stderr,
				Filter:     filter,
				Duration:   f.Duration,
				Count:      f.Count,
				JSONPath:   f.OutputJSON,
				PcapngPath: f.OutputPcapng,
				SVGPath:    f.OutputSVG,
				ReadyFile:  f.ReadyFile,
				RecordPath: f.OutputRecord,
				KernelBTF:  f.KernelBTF,
				Args:       os.Args[1:],
				Out:        os.Stdout,
				Color:      color,
				Facts:      run.NodeFacts(env.Proc, env.NetnsDirs...),
				NFTrace:    !f.NoNFTrace,

				RingBufferBytes: f.RingBuffer,
				MaxPackets:      f.MaxPackets,
				MaxRate:         uint64(f.MaxRate),
				Backend:         f.Backend,
				NetnsScope:      f.NetnsScope,
				HostNetns:       env.HostNetns,
				NetnsDirs:       env.NetnsDirs,
				Pods:            pods.pods,
				Labeller:        labeller,
				Degraded:        pods.degraded,
			})
			if err == nil && f.EmitJSON && f.OutputJSON != "" {
				err = emitJSON(os.Stdout, f.OutputJSON)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.FilterSrc, "src", "", "source address or CIDR (IPv4 or IPv6), or pod as POD, NAMESPACE/POD or pod/NAMESPACE/POD; omit for any")
	fl.StringVar(&f.FilterDst, "dst", "", "destination address, CIDR or pod; omit for any")
	fl.StringVar(&f.FilterProto, "proto", "", "protocol: icmp, tcp, udp, icmpv6 or a number (default any)")
	fl.StringVar(&f.FilterSport, "sport", "", "source port (tcp/udp)")
	fl.StringVar(&f.FilterDport, "dport", "", "destination port (tcp/udp)")
	fl.DurationVar(&f.Duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	fl.IntVar(&f.Count, "count", 0, "stop after this many packets (default: no limit)")
	fl.StringVar(&f.Backend, "backend", "auto", "how function-level hops are captured: auto (fentry, else kprobes, else none), fentry, kprobe, tracepoint")
	fl.IntVar(&f.MaxPackets, "max-packets", run.DefaultMaxPackets, "keep and print at most this many packets; later ones are only counted")
	fl.IntVar(&f.MaxRate, "max-rate", run.DefaultMaxRate, "trace at most this many new packets a second, whole; the rest of a busy flow are only counted (0: no limit)")
	fl.StringVar(&f.CRISocket, "cri-socket", "", "the container runtime's CRI socket, to find pods and label hops with them (default: containerd's or CRI-O's, under /host in a debug pod)")
	fl.StringVar(&f.OutputJSON, "json", "", "write the trace as JSON to this file")
	fl.StringVar(&f.OutputPcapng, pcapngFlag, "", pcapngUsage)
	fl.StringVar(&f.OutputSVG, svgFlag, "", svgUsage)
	fl.StringVar(&f.OutputColor, "color", "auto", "colour: auto (on a terminal), always, never")
	fl.BoolVar(&f.NoNFTrace, "no-nftrace", false, "do not add pathtrace's temporary nftables tracing table (then a netfilter drop is not traced to its rule)")
	fl.StringVar(&f.ReadyFile, "ready-file", "", "create this file once every probe is attached")
	fl.StringVar(&f.OutputRecord, "record-events", "", "write every raw event as JSON lines (test fixtures)")
	fl.StringVar(&f.KernelBTF, "kernel-btf", "", "kernel BTF file (default /sys/kernel/btf/vmlinux)")
	fl.Uint32Var(&f.RingBuffer, "ring-buffer", 0, "event ring buffer size in bytes, a power of two (default 8 MiB)")
	fl.StringSliceVar(&f.NetnsScope, "netns-scope", nil, "keep only hops in these network namespaces (names); simulates one node in the lab")
	fl.StringVar(&f.Probe, "probe", "", "send the flow's traffic: icmp, tcp (a SYN to --dport), udp, dns (a query to --dst port 53); from the --src pod's network namespace, else this one")
	fl.IntVar(&f.ProbeCount, "probe-count", 5, "how many probe packets, one every 200ms")
	fl.StringVar(&f.ProbeName, "probe-name", "", "the name a dns probe asks for (default kubernetes.default.svc.cluster.local)")
	fl.BoolVar(&f.EmitJSON, "emit-json", false, "after the verdict, print the --json trace on standard output, gzipped and checksummed between marker lines (kubectl-pathtrace's pods)")
	for _, hidden := range []string{"emit-json", "ready-file", "record-events", "kernel-btf", "ring-buffer", "netns-scope"} {
		_ = fl.MarkHidden(hidden)
	}
	cmd.AddCommand(newShowCmd(), newDemoCmd(), newMergeCmd(), newVersionCmd())
	cmd.SetContext(context.Background())
	return cmd
}
