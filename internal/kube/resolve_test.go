package kube

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/critest"
)

// node is a CRI server (critest, real gRPC on a unix socket) with the pods of a node, and a
// client of it.
func node(t *testing.T, pods ...cri.Pod) (*critest.Server, *cri.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "kube")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := critest.Start(filepath.Join(dir, "containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, p := range pods {
		s.Add(p)
	}
	c, err := cri.Dial(context.Background(), s.Socket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func ip(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

var t0 = time.Unix(1_800_000_000, 0)

// thisNode is a node's worth of pods.
var thisNode = []cri.Pod{
	{Namespace: "default", Name: "web-7c9d8-x2x", IPs: ip("10.1.0.5"), NetnsPath: "/var/run/netns/cni-1", Ready: true, CreatedAt: t0},
	{Namespace: "default", Name: "web-7c9d8-k1k", IPs: ip("10.1.0.6"), NetnsPath: "/var/run/netns/cni-2", Ready: true, CreatedAt: t0},
	{Namespace: "default", Name: "db-0", IPs: ip("10.1.0.9"), NetnsPath: "/var/run/netns/cni-3", Ready: true, CreatedAt: t0},
	{Namespace: "team-a", Name: "cache", IPs: ip("10.1.0.10"), NetnsPath: "/var/run/netns/cni-4", Ready: true, CreatedAt: t0},
	{Namespace: "team-b", Name: "cache", IPs: ip("10.1.0.11"), NetnsPath: "/var/run/netns/cni-5", Ready: true, CreatedAt: t0},
	{Namespace: "kube-system", Name: "kube-proxy-x1", IPs: ip("192.0.2.1"), HostNetwork: true, Ready: true, CreatedAt: t0},
	// Restarted: old sandbox stopped, new one ready.
	{Namespace: "default", Name: "api-1", SandboxID: "api-old", NetnsPath: "/var/run/netns/cni-6", CreatedAt: t0},
	{Namespace: "default", Name: "api-1", SandboxID: "api-new", IPs: ip("10.1.0.12"), NetnsPath: "/var/run/netns/cni-7", Ready: true, CreatedAt: t0.Add(time.Minute)},
	// Completed: only a stopped sandbox.
	{Namespace: "default", Name: "job-x", SandboxID: "job-old", NetnsPath: "/var/run/netns/cni-8", CreatedAt: t0},
}

// noAPI is a Resolver with no API to fall back on, as on a node without credentials.
func noAPI(t *testing.T, c *cri.Client) *Resolver {
	home := t.TempDir()
	return NewResolver(c, APIOptions{Getenv: env(nil), Home: home, ServiceAccountDir: filepath.Join(home, "sa")})
}

func TestResolveFound(t *testing.T) {
	_, c := node(t, thisNode...)
	r := noAPI(t, c)
	if r.Source != "CRI socket "+c.Socket() {
		t.Errorf("Source = %q", r.Source)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		ref   PodRef
		key   string
		netns string
		ready bool
	}{
		{PodRef{"default", "web-7c9d8-x2x"}, "default/web-7c9d8-x2x", "/var/run/netns/cni-1", true},
		{PodRef{"", "db-0"}, "default/db-0", "/var/run/netns/cni-3", true},
		{PodRef{"team-b", "cache"}, "team-b/cache", "/var/run/netns/cni-5", true},
		// The ready sandbox of a restarted pod, not the old one.
		{PodRef{"default", "api-1"}, "default/api-1", "/var/run/netns/cni-7", true},
		// Only a stopped sandbox: that one, not ready (its netns closed).
		{PodRef{"", "job-x"}, "default/job-x", "", false},
	} {
		p, err := r.Resolve(ctx, tc.ref)
		if err != nil {
			t.Errorf("Resolve(%v): %v", tc.ref, err)
			continue
		}
		if p.Key() != tc.key || p.NetnsPath != tc.netns || p.Ready != tc.ready {
			t.Errorf("Resolve(%v) = %+v, want %s netns %q ready %v", tc.ref, p, tc.key, tc.netns, tc.ready)
		}
	}
}

func TestResolveListsOnce(t *testing.T) {
	s, c := node(t, thisNode...)
	r := noAPI(t, c)
	ctx := context.Background()
	if _, err := r.Resolve(ctx, PodRef{"default", "db-0"}); err != nil {
		t.Fatal(err)
	}
	// The node's pods are listed once: a pod added since is not seen by this Resolver.
	s.Add(cri.Pod{Namespace: "default", Name: "late", Ready: true, NetnsPath: "/x"})
	if _, err := r.Resolve(ctx, PodRef{"default", "late"}); err == nil {
		t.Error("a pod added after the first Resolve was found: the pods were listed again")
	}
}

func TestResolveNotFound(t *testing.T) {
	_, c := node(t, thisNode...)
	r := noAPI(t, c)
	_, err := r.Resolve(context.Background(), PodRef{"default", "web"})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("Resolve(default/web) = %v, want a *NotFoundError", err)
	}
	if got := strings.Join(nf.Suggestions, " "); got != "default/web-7c9d8-k1k default/web-7c9d8-x2x" {
		t.Errorf("suggestions = %q", got)
	}
	msg := err.Error()
	for _, want := range []string{
		"pod default/web not found on this node (8 pods here, from CRI socket " + c.Socket(),
		"did you mean default/web-7c9d8-k1k, default/web-7c9d8-x2x?",
		"the Kubernetes API was not consulted: no Kubernetes API credentials: $KUBECONFIG is not set",
		"not in a pod (KUBERNETES_SERVICE_HOST/PORT are not set)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q\nlacks %q", msg, want)
		}
	}

	// A typo; the same name in another namespace.
	for _, tc := range []struct {
		ref  PodRef
		want string
	}{
		{PodRef{"default", "db-1"}, "default/db-0"},
		{PodRef{"", "dbb-0"}, "default/db-0"},
		{PodRef{"team-c", "cache"}, "team-a/cache, team-b/cache"},
		{PodRef{"kube-system", "web-7c9d8-x2x"}, "default/web-7c9d8-x2x, default/web-7c9d8-k1k"},
	} {
		_, err := r.Resolve(context.Background(), tc.ref)
		if err == nil || !strings.Contains(err.Error(), "did you mean "+tc.want+"?") {
			t.Errorf("Resolve(%v) = %v, want a suggestion of %s", tc.ref, err, tc.want)
		}
	}
	// Nothing close: no suggestion.
	_, err = r.Resolve(context.Background(), PodRef{"", "zzzzzzzz"})
	if err == nil || strings.Contains(err.Error(), "did you mean") || !strings.Contains(err.Error(), "pod zzzzzzzz not found on this node") {
		t.Errorf("Resolve(zzzzzzzz) = %v", err)
	}
}

func TestResolveAmbiguous(t *testing.T) {
	_, c := node(t, thisNode...)
	_, err := noAPI(t, c).Resolve(context.Background(), PodRef{"", "cache"})
	var amb *AmbiguousError
	if !errors.As(err, &amb) || err.Error() != "pod cache is in namespaces team-a, team-b: use team-a/cache or team-b/cache" {
		t.Errorf("Resolve(cache) = %v", err)
	}
}

func TestResolveHostNetwork(t *testing.T) {
	_, c := node(t, thisNode...)
	p, err := noAPI(t, c).ResolveFlag(context.Background(), PodRef{"kube-system", "kube-proxy-x1"}, "--dst")
	var hn *HostNetworkError
	if !errors.As(err, &hn) || !p.HostNetwork || p.Key() != "kube-system/kube-proxy-x1" {
		t.Fatalf("Resolve(kube-proxy-x1) = %+v, %v; want the pod and a *HostNetworkError", p, err)
	}
	want := "pod kube-system/kube-proxy-x1 uses the host network: it has no network namespace of its own and its IP is the node's (192.0.2.1); trace the node's address instead: --dst 192.0.2.1"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
}

func TestResolveEmptyNode(t *testing.T) {
	_, c := node(t)
	_, err := noAPI(t, c).Resolve(context.Background(), PodRef{"default", "web"})
	if err == nil || !strings.Contains(err.Error(), "pod default/web not found on this node (0 pods here") {
		t.Errorf("empty node: %v", err)
	}
}

func TestResolveCRIDown(t *testing.T) {
	s, c := node(t, thisNode...)
	s.Close()
	_, err := noAPI(t, c).Resolve(context.Background(), PodRef{"default", "web"})
	if err == nil || !strings.Contains(err.Error(), "CRI ListPodSandbox on "+c.Socket()) {
		t.Errorf("runtime gone: %v", err)
	}
}

// The API fallback, against a fake API server over TLS with a kubeconfig written here.
func TestResolveAPI(t *testing.T) {
	f := newFakeAPI(t)
	f.addPod("default", "web-remote", "node-b", "Running", false, "10.2.0.7", "fd00:2::7")
	f.addPod("default", "pending", "", "Pending", false)
	f.addPod("default", "starting", "node-a", "Pending", false)
	f.addPod("kube-system", "agent-b", "node-b", "Running", true, "192.0.2.2")
	f.addPod("team-a", "shared", "node-b", "Running", false, "10.2.0.20")
	f.addPod("team-b", "shared", "node-c", "Running", false, "10.3.0.20")
	kc := writeKubeconfig(t, t.TempDir(), f.srv.URL, f.caPEM(), "")

	_, c := node(t, thisNode...)
	r := NewResolver(c, APIOptions{Kubeconfig: kc})
	if r.API == nil {
		t.Fatalf("no API: %v", r.APIErr)
	}
	r.Node = "node-a"
	ctx := context.Background()

	// On another node: where, and what to type.
	_, err := r.ResolveFlag(ctx, PodRef{"default", "web-remote"}, "--src")
	var on *OtherNodeError
	if !errors.As(err, &on) || on.Pod.Node != "node-b" {
		t.Fatalf("web-remote: %v", err)
	}
	if want := "pod default/web-remote runs on node node-b, not here: run pathtrace on node-b, or trace by IP --src 10.2.0.7"; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	// Without a namespace: the API is asked across namespaces.
	_, err = r.Resolve(ctx, PodRef{"", "web-remote"})
	if !errors.As(err, &on) || !strings.Contains(err.Error(), "or trace by IP --src/--dst 10.2.0.7") {
		t.Errorf("web-remote without namespace: %v", err)
	}
	if got := f.requests[len(f.requests)-1]; got != "GET /api/v1/pods?fieldSelector=metadata.name%3Dweb-remote" {
		t.Errorf("request = %q", got)
	}
	// A host-network pod elsewhere: its IP is that node's.
	_, err = r.ResolveFlag(ctx, PodRef{"kube-system", "agent-b"}, "--dst")
	if err == nil || !strings.Contains(err.Error(), "--dst 192.0.2.2 (a host-network pod: that is node node-b's address)") {
		t.Errorf("agent-b: %v", err)
	}
	// Not scheduled; scheduled here but without a sandbox yet.
	if _, err = r.Resolve(ctx, PodRef{"default", "pending"}); err == nil || err.Error() != "pod default/pending is not scheduled on any node yet (phase Pending)" {
		t.Errorf("pending: %v", err)
	}
	_, err = r.Resolve(ctx, PodRef{"default", "starting"})
	if err == nil || !strings.Contains(err.Error(), "pod default/starting is scheduled on this node (node-a, phase Pending) but the container runtime (CRI socket "+c.Socket()+") has no sandbox for it") {
		t.Errorf("starting: %v", err)
	}
	// Ambiguous in the API.
	_, err = r.Resolve(ctx, PodRef{"", "shared"})
	if err == nil || err.Error() != "pod shared is in namespaces team-a, team-b (none of them on this node): use team-a/shared or team-b/shared" {
		t.Errorf("shared: %v", err)
	}
	// Nowhere: the API was asked and says so.
	_, err = r.Resolve(ctx, PodRef{"default", "web"})
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "did you mean default/web-7c9d8-k1k") ||
		!strings.HasSuffix(err.Error(), "the Kubernetes API (kubeconfig "+kc+", context test) has no such pod either") {
		t.Errorf("nowhere: %v", err)
	}
	// Pods on this node are found without asking the API.
	n := len(f.requests)
	if _, err := r.Resolve(ctx, PodRef{"default", "db-0"}); err != nil || len(f.requests) != n {
		t.Errorf("db-0: %v, %d API requests", err, len(f.requests)-n)
	}

	// RBAC says no (a debug pod's default service account): the error says what it means.
	f.forbidden = true
	_, err = r.Resolve(ctx, PodRef{"", "web-remote"})
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "the Kubernetes API could not be asked: GET "+f.srv.URL+"/api/v1/pods?fieldSelector=metadata.name%3Dweb-remote: 403 Forbidden: pods is forbidden") ||
		!strings.Contains(err.Error(), "may not list pods in all namespaces: name the pod as NAMESPACE/POD") {
		t.Errorf("forbidden: %v", err)
	}
	_, err = r.Resolve(ctx, PodRef{"default", "web-remote"})
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "may not read pods there") {
		t.Errorf("forbidden, with namespace: %v", err)
	}
	f.forbidden = false

	// The API server is down.
	f.srv.Close()
	_, err = r.Resolve(ctx, PodRef{"default", "web-remote"})
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "the Kubernetes API could not be asked: Get") {
		t.Errorf("API down: %v", err)
	}
}

func TestSuggest(t *testing.T) {
	pods := []cri.Pod{
		{Namespace: "default", Name: "frontend-abc"},
		{Namespace: "default", Name: "frontend-def"},
		{Namespace: "default", Name: "frontend2"},
		{Namespace: "default", Name: "backend"},
		{Namespace: "prod", Name: "frontend"},
		{Namespace: "default", Name: "my-frontend-x"},
	}
	got := suggest(PodRef{"default", "frontend"}, pods)
	want := "prod/frontend default/frontend-abc default/frontend-def default/frontend2 default/my-frontend-x"
	if strings.Join(got, " ") != want {
		t.Errorf("suggest = %v\nwant      %s", got, want)
	}
	if d := editDistance("kitten", "sitting"); d != 3 {
		t.Errorf("editDistance = %d", d)
	}
}
