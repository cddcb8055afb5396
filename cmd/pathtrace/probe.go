package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/pathtrace/pathtrace/internal/kube"
	"github.com/pathtrace/pathtrace/internal/kube/hostenv"
	"github.com/pathtrace/pathtrace/internal/probe"
	"github.com/pathtrace/pathtrace/trace"
)

// prober returns --probe's traffic, for run.Run to send once tracing is ready (nil without
// --probe). The probe leaves from the source pod's network namespace when --src is a pod, else
// from pathtrace's own; without --duration or --count the run ends two seconds after the last
// probe.
func (f *flags) prober(env hostenv.Env, src, dst endpoint, filter trace.Filter, pods []trace.PodInfo) (*probe.Probe, error) {
	if f.Probe == "" {
		return nil, nil
	}
	p := probe.Probe{Kind: f.Probe, Dst: dst.prefix.Addr(), Dport: filter.Dport, Count: f.ProbeCount, Name: f.ProbeName}
	if !dst.prefix.IsValid() || dst.prefix.Bits() != dst.prefix.Addr().BitLen() {
		p.Dst = netip.Addr{}
	}
	for _, pod := range pods {
		if pod.Side == "src" && pod.Netns != "" {
			p.Netns = pod.Netns
			if _, err := os.Stat(p.Netns); err != nil {
				p.Netns = env.HostPath(pod.Netns)
			}
		}
	}
	if src.pod != nil && p.Netns == "" {
		return nil, fmt.Errorf("--probe: the source pod %s has no network namespace on this node", src.pod)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if f.Duration == 0 && f.Count == 0 {
		f.Duration = time.Duration(p.Count)*p.Interval + 2*time.Second
	}
	return &p, nil
}

// emitJSON prints the trace file as kubectl-pathtrace takes it from its pod's log: gzipped,
// in marked base64 lines, with an end line that gives its length and sha256 (kube.WriteTrace).
func emitJSON(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return kube.WriteTrace(w, f)
}
