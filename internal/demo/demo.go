// Package demo builds a throwaway lab on this host — a "pod", a "node" and an "ext" network
// namespace joined by veth pairs — breaks it the way a real node breaks, traces a ping
// through it and removes it again.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/run"
	"github.com/pathtrace/pathtrace/trace"
)

// Options for the demo.
type Options struct {
	Out      io.Writer
	Color    bool
	JSONPath string
	// PcapngPath and SVGPath receive the capture and the picture ("" for none).
	PcapngPath, SVGPath string
	Args                []string
}

// Run builds the lab, traces it and tears it down, whatever happens in between.
func Run(ctx context.Context, o Options) (*trace.Trace, error) {
	topo, err := lab.Standard("pathtrace-demo", 77)
	if err != nil {
		return nil, fmt.Errorf("build demo lab: %w", err)
	}
	defer topo.Lab.Close()

	// The breakage of incident 003: a script turned IPv4 forwarding off on the node.
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return nil, fmt.Errorf("break demo lab: %w", err)
	}
	fmt.Fprintf(o.Out, "demo: built pod %s (%s) -> node %s -> ext %s (%s), then set net.ipv4.ip_forward=0 on the node\n",
		topo.Pod.Name(), topo.PodIP, topo.Node.Name(), topo.Ext.Name(), topo.ExtIP)
	fmt.Fprintf(o.Out, "demo: tracing 3 pings from the pod to ext, as: pathtrace --src %s --dst %s --proto icmp\n\n", topo.PodIP, topo.ExtIP)

	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	filter, err := trace.NewFilter(host(topo.PodIP), host(topo.ExtIP), trace.ProtoICMP, 0, 0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pingErr := make(chan error, 1)
	t, err := run.Run(ctx, run.Options{
		Filter:     filter,
		Count:      3,
		JSONPath:   o.JSONPath,
		PcapngPath: o.PcapngPath,
		SVGPath:    o.SVGPath,
		Args:       o.Args,
		Out:        o.Out,
		Color:      o.Color,
		Facts:      run.NodeFacts("/proc"),
		NFTrace:    true,
		OnReady: func() {
			_, err := topo.Pod.Ping(topo.ExtIP.String(), 0x7a7a, 3, 200*time.Millisecond, 500*time.Millisecond)
			pingErr <- err
		},
	})
	if err != nil {
		return nil, err
	}
	select {
	case err := <-pingErr:
		if err != nil {
			return t, fmt.Errorf("demo traffic: %w", err)
		}
	default:
	}
	if err := topo.Lab.Close(); err != nil {
		return t, fmt.Errorf("remove demo lab: %w", err)
	}
	fmt.Fprintln(o.Out, "\ndemo: lab removed; nothing is left on this host.")
	return t, nil
}
