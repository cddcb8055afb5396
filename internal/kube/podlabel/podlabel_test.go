package podlabel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/hostenv"
	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// pods is a Lister whose answer the test changes, counting the calls.
type pods struct {
	mu    sync.Mutex
	list  []cri.Pod
	err   error
	calls int
}

func (p *pods) Pods(context.Context) ([]cri.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return append([]cri.Pod(nil), p.list...), p.err
}

func (p *pods) set(list ...cri.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = list
}

func topology(t *testing.T, name string, net uint8) *lab.Topology {
	t.Helper()
	testutil.RequireRoot(t, "create network namespaces with veths")
	topo, err := lab.Standard("ptpl-"+name, net)
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() { topo.Close() })
	return topo
}

// ifindex is the index of dev in the namespace at path.
func ifindex(t *testing.T, path, dev string) uint32 {
	t.Helper()
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("%s in %s: %v", dev, path, err)
	}
	return uint32(l.Attrs().Index)
}

func web(netnsPath string) cri.Pod {
	return cri.Pod{Namespace: "default", Name: "web", Ready: true, NetnsPath: netnsPath}
}

// The lab's pod namespace, registered as pod default/web: its hops carry the pod, and the
// node's veth-pod (a real veth whose peer is in the pod's namespace) leads to it.
func TestLabelsRealVeths(t *testing.T) {
	topo := topology(t, "veth", 61)
	lister := &pods{}
	lister.set(web(topo.Pod.Path()), cri.Pod{Namespace: "kube-system", Name: "cilium", HostNetwork: true, Ready: true})
	l := New(lister, Options{HostNetns: netns.HostCandidates, NetnsDirs: []string{"/run/netns"}})
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	vethPod := ifindex(t, topo.Node.Path(), lab.NodePodIf)
	vethExt := ifindex(t, topo.Node.Path(), lab.NodeExtIf)
	podEth0 := ifindex(t, topo.Pod.Path(), lab.PodIf)

	if got := l.Pod(topo.Pod.Inode()); got != "default/web" {
		t.Errorf("Pod(pod netns) = %q, want default/web", got)
	}
	for _, ns := range []*lab.NS{topo.Node, topo.Ext} {
		if got := l.Pod(ns.Inode()); got != "" {
			t.Errorf("Pod(%s) = %q, want none", ns.Name(), got)
		}
	}
	if got := l.DevicePod(topo.Node.Inode(), vethPod, ""); got != "default/web" {
		t.Errorf("DevicePod(node veth-pod) = %q, want default/web", got)
	}
	if got := l.DevicePod(topo.Node.Inode(), 0, lab.NodePodIf); got != "default/web" {
		t.Errorf("DevicePod(node, by name veth-pod) = %q, want default/web", got)
	}
	if got := l.DevicePod(topo.Node.Inode(), vethExt, ""); got != "" {
		t.Errorf("DevicePod(node veth-ext) = %q, want none: it leads to ext, not a pod", got)
	}
	if got := l.DevicePod(topo.Ext.Inode(), ifindex(t, topo.Ext.Path(), lab.ExtIf), ""); got != "" {
		t.Errorf("DevicePod(ext eth0) = %q, want none", got)
	}

	p := trace.Packet{
		Hops: []trace.Hop{
			{Event: trace.KindXmit, Place: trace.Place{Netns: topo.Pod.Inode(), Ifindex: podEth0, Ifname: "eth0"}},
			{Event: trace.KindReceive, Place: trace.Place{Netns: topo.Node.Inode(), Ifindex: vethPod, Ifname: lab.NodePodIf}},
			{Event: trace.KindRoute, Place: trace.Place{Netns: topo.Node.Inode(), Ifname: lab.NodePodIf}},
			{Event: trace.KindXmit, Place: trace.Place{Netns: topo.Node.Inode(), Ifindex: vethExt, Ifname: lab.NodeExtIf}},
			{Event: trace.KindReceive, Place: trace.Place{Netns: topo.Ext.Inode(), Ifname: lab.ExtIf}},
		},
		Fate: trace.Fate{Outcome: trace.Dropped, Place: trace.Place{Netns: topo.Node.Inode(), Ifname: lab.NodePodIf}},
	}
	l.Label(&p)
	want := []struct{ pod, dev string }{{"default/web", ""}, {"", "default/web"}, {"", "default/web"}, {"", ""}, {"", ""}}
	for i, w := range want {
		if h := p.Hops[i]; h.Pod != w.pod || h.DevicePod != w.dev {
			t.Errorf("hop %d (%s %s) labelled pod %q device %q, want %q %q", i, h.Event, h.Ifname, h.Pod, h.DevicePod, w.pod, w.dev)
		}
	}
	if p.Fate.Pod != "" || p.Fate.DevicePod != "default/web" {
		t.Errorf("fate labelled pod %q device %q, want the device leading to default/web", p.Fate.Pod, p.Fate.DevicePod)
	}
}

// What is known costs no refresh; a namespace never seen makes one, at most once per
// MinRefresh, and then a pod started meanwhile is named.
func TestRefreshOnUnknown(t *testing.T) {
	topo := topology(t, "cache", 62)
	lister := &pods{}
	lister.set(web(topo.Pod.Path()))
	l := New(lister, Options{HostNetns: netns.HostCandidates, NetnsDirs: []string{"/run/netns"}, MinRefresh: 300 * time.Millisecond, MaxAge: time.Hour})
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		l.Pod(topo.Pod.Inode())
		l.DevicePod(topo.Node.Inode(), 0, lab.NodePodIf)
		l.Pod(topo.Ext.Inode())
	}
	if n := l.Refreshes(); n != 1 {
		t.Errorf("%d refreshes for known namespaces, want only the first", n)
	}

	// A second pod: its namespace appears after the last read.
	db, err := topo.Lab.AddNS("db")
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Lab.Veth(db, "eth0", "10.62.3.2/24", topo.Node, "lxc-db", "10.62.3.1/24"); err != nil {
		t.Fatal(err)
	}
	lister.set(web(topo.Pod.Path()), cri.Pod{Namespace: "shop", Name: "db", Ready: true, NetnsPath: db.Path()})
	time.Sleep(350 * time.Millisecond)
	if got := l.Pod(db.Inode()); got != "shop/db" {
		t.Errorf("Pod(new namespace) = %q, want shop/db after a refresh", got)
	}
	if got := l.DevicePod(topo.Node.Inode(), ifindex(t, topo.Node.Path(), "lxc-db"), ""); got != "shop/db" {
		t.Errorf("DevicePod(node lxc-db) = %q, want shop/db", got)
	}
	n := l.Refreshes()
	for ino := uint32(1); ino <= 100; ino++ {
		l.Pod(ino) // inodes no namespace has
	}
	if got := l.Refreshes() - n; got > 1 {
		t.Errorf("%d refreshes for 100 unknown namespaces within MinRefresh, want at most 1", got)
	}
}

// A runtime that fails leaves hops unlabelled, and says why.
func TestListerError(t *testing.T) {
	lister := &pods{err: errors.New("connection refused")}
	l := New(lister, Options{MinRefresh: 10 * time.Millisecond})
	p := trace.Packet{Hops: []trace.Hop{{Place: trace.Place{Netns: 4026531840, Ifindex: 2}}}}
	l.Label(&p)
	if p.Hops[0].Pod != "" || p.Hops[0].DevicePod != "" {
		t.Errorf("labelled %+v without any pods", p.Hops[0])
	}
	if err := l.Err(); err == nil || !errors.Is(err, lister.err) {
		t.Errorf("Err() = %v, want the lister's error", err)
	}
	// A runtime that does not answer is not asked again at every unknown namespace, even
	// past MinRefresh.
	time.Sleep(20 * time.Millisecond)
	for ino := uint32(1); ino <= 50; ino++ {
		l.Pod(ino)
	}
	if n := l.Refreshes(); n != 1 {
		t.Errorf("%d refreshes after the runtime failed, want 1 (the next after %s)", n, failedRetry)
	}
}

// From a debug pod the runtime's netns path is the node's ("/var/run/netns/cni-..."): it is
// found under /host, through the node's /var/run -> /run link. A file there that is not a
// namespace (a mount the pod does not see) is skipped, not mistaken for one.
func TestDebugPodPaths(t *testing.T) {
	topo := topology(t, "debug", 63)
	root := t.TempDir()
	for _, d := range []string{"proc", "host/etc", "host/run/netns"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/run", filepath.Join(root, "host/var/run")); err != nil {
		if err := os.MkdirAll(filepath.Join(root, "host/var"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/run", filepath.Join(root, "host/var/run")); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(root, "host/run/netns/cni-5b1e")
	stale := filepath.Join(root, "host/run/netns/cni-stale")
	for _, f := range []string{mnt, stale} {
		if err := os.WriteFile(f, nil, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(topo.Pod.Path(), mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind the pod's namespace under the fake /host: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })

	env, _ := hostenv.DetectAt(root)
	if !env.DebugPod {
		t.Fatalf("fake root %s not detected as a debug pod: %+v", root, env)
	}
	lister := &pods{}
	lister.set(web("/var/run/netns/cni-5b1e"), cri.Pod{Namespace: "default", Name: "gone", Ready: true, NetnsPath: "/var/run/netns/cni-stale"})
	l := New(lister, Options{HostPath: env.HostPath, HostNetns: netns.HostCandidates, NetnsDirs: append(env.NetnsDirs, "/run/netns")})
	if err := l.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := l.Pod(topo.Pod.Inode()); got != "default/web" {
		t.Errorf("Pod(pod netns) = %q, want default/web found through %s", got, env.HostPath("/var/run/netns/cni-5b1e"))
	}
	if got := l.DevicePod(topo.Node.Inode(), 0, lab.NodePodIf); got != "default/web" {
		t.Errorf("DevicePod(node veth-pod) = %q, want default/web", got)
	}
	staleIno, err := netns.Inode(stale)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Pod(staleIno); got != "" {
		t.Errorf("the placeholder file's inode is labelled %q", got)
	}
}

// BenchmarkLabel is the cost per packet once the cache is warm (five hops, a fate).
// benchLab is the standard lab with its pod netns the pod default/web, and a labeller for it.
func benchLab(b *testing.B, maxAge time.Duration) (*lab.Topology, *Labeller) {
	testutil.RequireRoot(b, "create network namespaces with veths")
	topo, err := lab.Standard("ptpl-bench", 64)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = topo.Close() })
	lister := &pods{}
	lister.set(web(topo.Pod.Path()))
	return topo, New(lister, Options{HostNetns: netns.HostCandidates, NetnsDirs: []string{"/run/netns"}, MaxAge: maxAge})
}

func BenchmarkLabel(b *testing.B) {
	topo, l := benchLab(b, time.Hour)
	if err := l.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	p := trace.Packet{
		Hops: []trace.Hop{
			{Place: trace.Place{Netns: topo.Pod.Inode(), Ifindex: 2, Ifname: "eth0"}},
			{Place: trace.Place{Netns: topo.Node.Inode(), Ifindex: 2, Ifname: lab.NodePodIf}},
			{Place: trace.Place{Netns: topo.Node.Inode(), Ifname: lab.NodePodIf}},
			{Place: trace.Place{Netns: topo.Node.Inode(), Ifindex: 3, Ifname: lab.NodeExtIf}},
			{Place: trace.Place{Netns: topo.Ext.Inode(), Ifindex: 2, Ifname: lab.ExtIf}},
		},
		Fate: trace.Fate{Place: trace.Place{Netns: topo.Ext.Inode(), Ifname: lab.ExtIf}},
	}
	b.ResetTimer()
	for range b.N {
		l.Label(&p)
	}
	b.StopTimer()
	if n := l.Refreshes(); n != 1 {
		b.Errorf("%d refreshes, want 1", n)
	}
}

// BenchmarkRefresh is one read of the runtime's pods and of the node's devices (this lab: one
// pod, three named namespaces besides the node's own).
func BenchmarkRefresh(b *testing.B) {
	_, l := benchLab(b, 0)
	for range b.N {
		if err := l.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
