package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/critest"
	"github.com/pathtrace/pathtrace/internal/kube/hostenv"
	"github.com/pathtrace/pathtrace/trace"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestPickAddresses(t *testing.T) {
	dual := &cri.Pod{Namespace: "default", Name: "web", Ready: true, IPs: addrs("10.244.1.5", "fd00::5")}
	v6first := &cri.Pod{Namespace: "default", Name: "db", Ready: true, IPs: addrs("fd00::7", "10.244.1.7")}
	v4only := &cri.Pod{Namespace: "default", Name: "old", Ready: true, IPs: addrs("10.244.1.9")}
	v6only := &cri.Pod{Namespace: "default", Name: "new", Ready: true, IPs: addrs("fd00::9")}
	stopped := &cri.Pod{Namespace: "default", Name: "gone"}
	cases := []struct {
		name             string
		src, dst         string // an address, "" for any, or "pod" for the pod given
		srcPod, dstPod   *cri.Pod
		wantSrc, wantDst string
		wantErr          string
	}{
		{"pod to any: its primary", "pod", "", dual, nil, "10.244.1.5/32", "", ""},
		{"pod to v6 address", "pod", "2001:db8::1", dual, nil, "fd00::5/128", "2001:db8::1/128", ""},
		{"v4 address to pod", "10.0.0.1", "pod", nil, v6first, "10.0.0.1/32", "10.244.1.7/32", ""},
		{"two pods: src's family order", "pod", "pod", v6first, dual, "fd00::7/128", "fd00::5/128", ""},
		{"two pods: the family both have", "pod", "pod", v4only, v6first, "10.244.1.9/32", "10.244.1.7/32", ""},
		{"two pods, no common family", "pod", "pod", v4only, v6only, "", "", "pods default/old (10.244.1.9) and default/new (fd00::9) have no address family in common"},
		{"pod without the family", "pod", "8.8.8.8", v6only, nil, "", "", "--src: pod default/new has no IPv4 address (it has fd00::9), and --dst 8.8.8.8 is IPv4"},
		{"pod without addresses", "1.1.1.1", "pod", nil, stopped, "", "", "--dst: pod default/gone has no IP address (not ready: its sandbox is stopped)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			side := func(flag, v string) *endpoint {
				e := &endpoint{flag: flag, side: strings.TrimPrefix(flag, "--")}
				if v != "" && v != "pod" {
					a := netip.MustParseAddr(v)
					e.prefix = netip.PrefixFrom(a, a.BitLen())
				}
				return e
			}
			src, dst := side("--src", c.src), side("--dst", c.dst)
			err := pickAddresses(src, dst, c.srcPod, c.dstPod)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			str := func(p netip.Prefix) string {
				if !p.IsValid() {
					return ""
				}
				return p.String()
			}
			if str(src.prefix) != c.wantSrc || str(dst.prefix) != c.wantDst {
				t.Errorf("src %s dst %s, want %s %s", str(src.prefix), str(dst.prefix), c.wantSrc, c.wantDst)
			}
		})
	}
}

// node lays out a node's filesystem in a temporary directory (as a debug pod sees it when
// debugPod), with the container runtime's socket served by a CRI server when pods are given.
func node(t *testing.T, debugPod, kubelet bool, pods ...cri.Pod) hostenv.Env {
	t.Helper()
	root, err := os.MkdirTemp("", "ptnode")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	host := root
	if debugPod {
		host = filepath.Join(root, "host")
	}
	dirs := []string{"etc", "run/netns", "run/containerd"}
	if kubelet {
		dirs = append(dirs, "var/lib/kubelet")
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if pods != nil {
		srv, err := critest.Start(filepath.Join(host, "run/containerd/containerd.sock"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		for _, p := range pods {
			srv.Add(p)
		}
	}
	env, err := hostenv.DetectAt(root)
	if err != nil {
		t.Fatal(err)
	}
	if env.DebugPod != debugPod {
		t.Fatalf("fake node detected as debug pod %v, want %v", env.DebugPod, debugPod)
	}
	return env
}

// From a debug pod, with no --cri-socket: the runtime's socket is found under /host, the pod
// resolves, becomes the filter's address and the trace's Meta.Pods.
func TestSetupPodsInDebugPod(t *testing.T) {
	web := cri.Pod{Namespace: "default", Name: "web", Ready: true, IPs: addrs("10.244.1.5", "fd00::5"), NetnsPath: "/var/run/netns/cni-5b1e"}
	env := node(t, true, true, web)
	src, _ := parseEndpoint("--src", "pod/default/web")
	dst, _ := parseEndpoint("--dst", "8.8.8.8")
	s, err := setupPods(context.Background(), env, "", &src, &dst)
	if err != nil {
		t.Fatalf("setupPods: %v", err)
	}
	defer s.Close()
	if s.client == nil || s.client.Socket() != filepath.Join(env.HostRoot, "run/containerd/containerd.sock") {
		t.Fatalf("connected to %v, want the socket under /host", s.client)
	}
	if src.prefix != netip.MustParsePrefix("10.244.1.5/32") {
		t.Errorf("src = %s, want the pod's IPv4 address", src.prefix)
	}
	want := trace.PodInfo{Side: "src", Namespace: "default", Name: "web", IPs: web.IPs, Traced: web.IPs[0], Netns: web.NetnsPath}
	if len(s.pods) != 1 || s.pods[0].Key() != want.Key() || s.pods[0].Traced != want.Traced || s.pods[0].Netns != want.Netns || len(s.pods[0].IPs) != 2 {
		t.Errorf("pods = %+v, want [%+v]", s.pods, want)
	}
	if s.labeller == nil {
		t.Error("no labeller, though a runtime answered")
	}
}

// Tracing by address never needs a runtime: none found is no error, and a line in the header
// only on a node that runs a kubelet. Naming a pod without one is an error that says what to do.
func TestSetupPodsWithoutRuntime(t *testing.T) {
	for _, c := range []struct {
		name              string
		debugPod, kubelet bool
		src               string
		wantErr, degraded string
	}{
		{"address, plain host", false, false, "10.0.0.1", "", ""},
		{"address, kubelet node", false, true, "10.0.0.1", "", "hops are not labelled with pods: no CRI socket found"},
		{"pod, on the node", false, true, "web", "--src names a pod, but no CRI socket found", ""},
		{"pod, debug pod", true, true, "web", "--src names a pod, but no CRI socket under ", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := node(t, c.debugPod, c.kubelet)
			src, err := parseEndpoint("--src", c.src)
			if err != nil {
				t.Fatal(err)
			}
			dst := endpoint{flag: "--dst", side: "dst"}
			s, err := setupPods(context.Background(), env, "", &src, &dst)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.labeller != nil || s.client != nil {
				t.Errorf("labelling set up without a runtime")
			}
			got := strings.Join(s.degraded, "\n")
			if (c.degraded == "") != (got == "") || !strings.Contains(got, c.degraded) {
				t.Errorf("degraded = %q, want %q", got, c.degraded)
			}
		})
	}
}
