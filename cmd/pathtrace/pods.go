package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/internal/kube"
	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/hostenv"
	"github.com/pathtrace/pathtrace/internal/kube/podlabel"
	"github.com/pathtrace/pathtrace/trace"
)

// endpoint is one side of the flow as the user named it: an address or CIDR, or a pod.
type endpoint struct {
	flag   string // "--src"
	side   string // "src"
	prefix netip.Prefix
	pod    *kube.PodRef
}

func parseEndpoint(flag, value string) (endpoint, error) {
	e := endpoint{flag: flag, side: strings.TrimPrefix(flag, "--")}
	ref, isPod, err := kube.ParsePodRef(value)
	if err != nil {
		return e, fmt.Errorf("%s: %w", flag, err)
	}
	if isPod {
		e.pod = &ref
		return e, nil
	}
	// An address goes the way it always went: nothing about pods is asked.
	if e.prefix, err = trace.ParseAddr(value); err != nil {
		return e, fmt.Errorf("%s: %w", flag, err)
	}
	return e, nil
}

// podSetup is what the node's container runtime tells a run: the pods named on the command
// line and the labeller that names every hop's pod.
type podSetup struct {
	pods     []trace.PodInfo
	labeller *podlabel.Labeller
	degraded []string
	client   *cri.Client
}

func (s *podSetup) Close() {
	if s != nil && s.client != nil {
		s.client.Close()
	}
}

// labelDialTimeout bounds connecting to a runtime found by itself when no pod was named: a
// hung runtime must not hold up tracing by addresses for long.
const labelDialTimeout = 2 * time.Second

// resolveTimeout bounds finding the named pods (the runtime, then maybe the Kubernetes API).
const resolveTimeout = 20 * time.Second

// setupPods connects to the node's container runtime (socket, or the one env finds), resolves
// the pods src and dst name and sets their addresses, and makes the labeller. Without a
// runtime, naming a pod is an error; tracing by address is not, and goes on unlabelled.
func setupPods(ctx context.Context, env hostenv.Env, socket string, src, dst *endpoint) (*podSetup, error) {
	named := src.pod != nil || dst.pod != nil
	explicit := socket != ""
	s := &podSetup{}
	if !explicit {
		found, err := env.CRISocket()
		switch {
		case err != nil && named:
			return nil, fmt.Errorf("%s names a pod, but %w", podFlag(src, dst), err)
		case err != nil:
			if env.KubeNode {
				s.degraded = append(s.degraded, "hops are not labelled with pods: "+err.Error())
			}
			return s, nil
		}
		socket = found
	}
	dialCtx := ctx
	if !explicit && !named {
		var cancel context.CancelFunc
		dialCtx, cancel = context.WithTimeout(ctx, labelDialTimeout)
		defer cancel()
	}
	client, err := cri.Dial(dialCtx, socket)
	if err != nil {
		switch {
		case explicit:
			return nil, fmt.Errorf("--cri-socket: %w", err)
		case named:
			return nil, fmt.Errorf("%s names a pod, but %w", podFlag(src, dst), err)
		}
		s.degraded = append(s.degraded, "hops are not labelled with pods: "+err.Error())
		return s, nil
	}
	s.client = client

	if named {
		r := kube.NewResolver(client, kube.APIOptions{})
		// A runtime or API server that stops answering must not hang the command line.
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		defer cancel()
		var pods [2]*cri.Pod
		for i, e := range []*endpoint{src, dst} {
			if e.pod == nil {
				continue
			}
			p, err := r.ResolveFlag(rctx, *e.pod, e.flag)
			if err != nil {
				client.Close()
				return nil, fmt.Errorf("%s: %w", e.flag, err)
			}
			pods[i] = &p
		}
		if err := pickAddresses(src, dst, pods[0], pods[1]); err != nil {
			client.Close()
			return nil, err
		}
		for i, e := range []*endpoint{src, dst} {
			if p := pods[i]; p != nil {
				s.pods = append(s.pods, trace.PodInfo{Side: e.side, Namespace: p.Namespace, Name: p.Name,
					IPs: p.IPs, Traced: e.prefix.Addr(), Netns: p.NetnsPath})
			}
		}
	}

	s.labeller = podlabel.New(client, podlabel.Options{HostPath: env.HostPath, HostNetns: env.HostNetns, NetnsDirs: env.NetnsDirs})
	refreshCtx, cancel := context.WithTimeout(ctx, cri.DialTimeout)
	defer cancel()
	if err := s.labeller.Refresh(refreshCtx); err != nil {
		s.degraded = append(s.degraded, "hops may lack pod labels: "+err.Error())
	}
	return s, nil
}

func podFlag(src, dst *endpoint) string {
	if src.pod != nil {
		return src.flag
	}
	return dst.flag
}

// pickAddresses sets each pod side's address. The filter holds one address per side, of one
// family: a pod gives its first address of the family the other side is in; two pods, the
// first family (in src's order) both have.
func pickAddresses(src, dst *endpoint, srcPod, dstPod *cri.Pod) error {
	for _, side := range []struct {
		e   *endpoint
		pod *cri.Pod
	}{{src, srcPod}, {dst, dstPod}} {
		if side.pod != nil && len(side.pod.IPs) == 0 {
			state := "ready"
			if !side.pod.Ready {
				state = "not ready: its sandbox is stopped"
			}
			return fmt.Errorf("%s: pod %s has no IP address (%s): is it running?", side.e.flag, side.pod.Key(), state)
		}
	}
	first := func(p *cri.Pod, v4 bool) (netip.Addr, bool) {
		for _, a := range p.IPs {
			if a.Is4() == v4 {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	set := func(e *endpoint, p *cri.Pod, v4 bool, other string) error {
		a, ok := first(p, v4)
		if !ok {
			fam := "IPv6"
			if v4 {
				fam = "IPv4"
			}
			return fmt.Errorf("%s: pod %s has no %s address (it has %s), and %s is %s", e.flag, p.Key(), fam, addrList(p.IPs), other, fam)
		}
		e.prefix = netip.PrefixFrom(a, a.BitLen())
		return nil
	}
	switch {
	case srcPod != nil && dstPod != nil:
		for _, a := range srcPod.IPs {
			if b, ok := first(dstPod, a.Is4()); ok {
				src.prefix, dst.prefix = netip.PrefixFrom(a, a.BitLen()), netip.PrefixFrom(b, b.BitLen())
				return nil
			}
		}
		return fmt.Errorf("pods %s (%s) and %s (%s) have no address family in common", srcPod.Key(), addrList(srcPod.IPs), dstPod.Key(), addrList(dstPod.IPs))
	case srcPod != nil && dst.prefix.IsValid():
		return set(src, srcPod, dst.prefix.Addr().Is4(), "--dst "+prefixString(dst.prefix))
	case dstPod != nil && src.prefix.IsValid():
		return set(dst, dstPod, src.prefix.Addr().Is4(), "--src "+prefixString(src.prefix))
	case srcPod != nil:
		return set(src, srcPod, srcPod.IPs[0].Is4(), "")
	case dstPod != nil:
		return set(dst, dstPod, dstPod.IPs[0].Is4(), "")
	}
	return nil
}

// prefixString prints a single address without its /32 or /128, as the user typed it.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func addrList(as []netip.Addr) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
