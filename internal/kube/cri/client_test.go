package cri_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/critest"
)

func startServer(t *testing.T) *critest.Server {
	t.Helper()
	s, err := critest.Start(filepath.Join(shortTempDir(t), "cri.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, socket string) *cri.Client {
	t.Helper()
	c, err := cri.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestPods(t *testing.T) {
	s := startServer(t)
	t0 := time.Unix(1_800_000_000, 0)
	s.Add(cri.Pod{Namespace: "default", Name: "web-7c9", IPs: addrs("10.1.0.5", "fd00::5"), NetnsPath: "/var/run/netns/cni-aaaa", Ready: true, CreatedAt: t0})
	s.Add(cri.Pod{Namespace: "kube-system", Name: "kube-proxy-x1", IPs: addrs("192.0.2.1"), HostNetwork: true, Ready: true, CreatedAt: t0})
	s.Add(cri.Pod{Namespace: "default", Name: "db-0", IPs: addrs("10.1.0.9"), NetnsPath: "/proc/4321/ns/net", Ready: true, CreatedAt: t0})
	// A restarted pod: the old sandbox stopped, the new one ready.
	s.Add(cri.Pod{Namespace: "default", Name: "api-1", SandboxID: "old", IPs: addrs("10.1.0.7"), NetnsPath: "/var/run/netns/cni-old", CreatedAt: t0})
	s.Add(cri.Pod{Namespace: "default", Name: "api-1", SandboxID: "new", IPs: addrs("10.1.0.8"), NetnsPath: "/var/run/netns/cni-new", Ready: true, CreatedAt: t0.Add(time.Minute)})

	c := dial(t, s.Socket())
	if c.Runtime() != critest.RuntimeName+" "+critest.RuntimeVersion || c.Socket() != s.Socket() {
		t.Errorf("Runtime %q Socket %q", c.Runtime(), c.Socket())
	}
	pods, err := c.Pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range pods {
		keys = append(keys, p.Key()+"@"+p.SandboxID[:min(3, len(p.SandboxID))])
	}
	// Sorted by namespace and name, the ready sandbox of a pod before its stopped one.
	if got, want := strings.Join(keys, " "), "default/api-1@new default/api-1@old default/db-0@"; !strings.HasPrefix(got, want) {
		t.Errorf("order: %s", got)
	}
	byID := map[string]cri.Pod{}
	for _, p := range pods {
		byID[p.Key()+"/"+map[bool]string{true: "ready", false: "stopped"}[p.Ready]] = p
	}

	web := byID["default/web-7c9/ready"]
	if web.NetnsPath != "/var/run/netns/cni-aaaa" || !equalAddrs(web.IPs, addrs("10.1.0.5", "fd00::5")) || web.HostNetwork || web.UID == "" || web.SandboxID == "" {
		t.Errorf("web-7c9 = %+v", web)
	}
	if !web.CreatedAt.Equal(t0) {
		t.Errorf("web-7c9 CreatedAt = %v, want %v", web.CreatedAt, t0)
	}
	// containerd gives the pause process's pid when the spec names no netns path.
	if db := byID["default/db-0/ready"]; db.NetnsPath != "/proc/4321/ns/net" {
		t.Errorf("db-0 NetnsPath = %q, want /proc/4321/ns/net", db.NetnsPath)
	}
	proxy := byID["kube-system/kube-proxy-x1/ready"]
	if !proxy.HostNetwork || proxy.NetnsPath != "" || !equalAddrs(proxy.IPs, addrs("192.0.2.1")) {
		t.Errorf("host-network pod = %+v", proxy)
	}
	old := byID["default/api-1/stopped"]
	if old.SandboxID != "old" || old.Ready || old.NetnsPath != "" || len(old.IPs) != 0 {
		t.Errorf("stopped sandbox = %+v, want not ready, netns closed, no IPs", old)
	}
	if cur := byID["default/api-1/ready"]; cur.SandboxID != "new" || cur.NetnsPath != "/var/run/netns/cni-new" {
		t.Errorf("restarted pod's ready sandbox = %+v", cur)
	}

	// Remove forgets every sandbox of the pod.
	s.Remove("api-1", "default")
	pods, err = c.Pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 {
		t.Errorf("after Remove: %d pods, want 3", len(pods))
	}
}

// CRI-O's verbose info (no infra container: the runtime spec alone) gives the netns too.
func TestPodsCRIOInfo(t *testing.T) {
	s := startServer(t)
	s.Add(cri.Pod{Namespace: "default", Name: "web", SandboxID: "sb1", IPs: addrs("10.85.0.17"), Ready: true})
	s.SetInfo("sb1", map[string]string{"info": `{"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/4f1c0e2a"}]}}}`})
	pods, err := dial(t, s.Socket()).Pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].NetnsPath != "/var/run/netns/4f1c0e2a" {
		t.Errorf("Pods = %+v", pods)
	}
}

func TestDialErrors(t *testing.T) {
	dir := shortTempDir(t)
	ctx := context.Background()

	missing := filepath.Join(dir, "containerd.sock")
	_, err := cri.Dial(ctx, missing)
	if err == nil || !strings.Contains(err.Error(), "CRI socket "+missing+": no such file or directory (is containerd running? use --cri-socket)") {
		t.Errorf("missing socket: %v", err)
	}
	_, err = cri.Dial(ctx, filepath.Join(dir, "crio.sock"))
	if err == nil || !strings.Contains(err.Error(), "is CRI-O running?") {
		t.Errorf("missing CRI-O socket: %v", err)
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := cri.Dial(ctx, file); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("regular file: %v", err)
	}

	// A gRPC server that does not serve CRI v1 (an old runtime with only v1alpha2, say).
	lis, err := net.Listen("unix", filepath.Join(dir, "other.sock"))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	go g.Serve(lis)
	defer g.Stop()
	if _, err := cri.Dial(ctx, lis.Addr().String()); err == nil || !strings.Contains(err.Error(), "CRI v1 Version") || !strings.Contains(err.Error(), "Unimplemented") || !strings.Contains(err.Error(), "does not serve CRI v1") {
		t.Errorf("not a CRI server: %v", err)
	}

	// A socket nobody answers on (a runtime that died and left it): a quick, clear failure.
	dead := filepath.Join(dir, "dead.sock")
	l2, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	start := time.Now()
	if _, err := cri.Dial(ctx, dead); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("dead socket: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dead socket took %v to fail", d)
	}
}

func TestFindSocket(t *testing.T) {
	root := shortTempDir(t)
	_, err := cri.FindSocket(root)
	if err == nil {
		t.Fatal("FindSocket found a socket in an empty root")
	}
	for _, s := range cri.DefaultSockets {
		if !strings.Contains(err.Error(), filepath.Join(root, s)) {
			t.Errorf("error %q does not name %s", err, filepath.Join(root, s))
		}
	}
	if !strings.Contains(err.Error(), "--cri-socket") {
		t.Errorf("error %q does not say --cri-socket", err)
	}

	// CRI-O's second place; a regular file at containerd's place does not count.
	os.MkdirAll(filepath.Join(root, "run/containerd"), 0o755)
	os.WriteFile(filepath.Join(root, "run/containerd/containerd.sock"), nil, 0o644)
	os.MkdirAll(filepath.Join(root, "run/crio"), 0o755)
	s, err := critest.Start(filepath.Join(root, "run/crio/crio.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := cri.FindSocket(root)
	if err != nil || got != filepath.Join(root, "run/crio/crio.sock") {
		t.Errorf("FindSocket = %q, %v", got, err)
	}
	// The socket it finds answers.
	dial(t, got)
}

func TestFindSocketRootSlash(t *testing.T) {
	for _, root := range []string{"", "/"} {
		got, err := cri.FindSocket(root)
		if err != nil {
			for _, s := range cri.DefaultSockets {
				if !strings.Contains(err.Error(), s) || strings.Contains(err.Error(), "//") {
					t.Errorf("root %q: error %q should name %s as is", root, err, s)
				}
			}
			continue
		}
		if !strings.HasPrefix(got, "/run/") && !strings.HasPrefix(got, "/var/run/") {
			t.Errorf("root %q: FindSocket = %q", root, got)
		}
	}
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// flakyRuntime answers PodSandboxStatus with NotFound for "gone" (removed since the list) and
// an internal error for "broken" (a sandbox containerd cannot describe).
type flakyRuntime struct{ *critest.Server }

func (f flakyRuntime) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	switch req.PodSandboxId {
	case "gone":
		return nil, status.Error(codes.NotFound, "not found")
	case "broken":
		return nil, status.Error(codes.Unknown, "failed to get sandbox container info")
	}
	return f.Server.PodSandboxStatus(ctx, req)
}

func TestPodsStatusErrors(t *testing.T) {
	dir := shortTempDir(t)
	s, err := critest.Start(filepath.Join(dir, "unused.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 20; i++ {
		s.Add(cri.Pod{Namespace: "default", Name: fmt.Sprintf("p%02d", i), Ready: true, NetnsPath: fmt.Sprintf("/var/run/netns/cni-%d", i)})
	}
	s.Add(cri.Pod{Namespace: "default", Name: "gone", SandboxID: "gone", Ready: true})
	s.Add(cri.Pod{Namespace: "default", Name: "broken", SandboxID: "broken", Ready: true, NetnsPath: "/x"})

	lis, err := net.Listen("unix", filepath.Join(dir, "flaky.sock"))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, flakyRuntime{s})
	go g.Serve(lis)
	defer g.Stop()

	pods, err := dial(t, lis.Addr().String()).Pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 21 {
		t.Fatalf("%d pods, want 21 (20 and the broken one, not the gone one)", len(pods))
	}
	for i, p := range pods {
		switch {
		case p.Name == "broken":
			if !p.Ready || p.NetnsPath != "" || p.SandboxID != "broken" {
				t.Errorf("broken sandbox = %+v, want it listed without netns", p)
			}
		case p.NetnsPath == "":
			t.Errorf("pod %d = %+v has no netns", i, p)
		}
	}
}
