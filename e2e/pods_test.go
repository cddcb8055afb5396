package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
	"github.com/pathtrace/pathtrace/internal/kube/critest"
	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/trace"
)

// criServer serves the CRI RuntimeService on a unix socket, as the node's container runtime
// would, for the duration of the test.
func criServer(t *testing.T, pods ...cri.Pod) *critest.Server {
	t.Helper()
	// A unix socket path must fit in 108 bytes; t.TempDir's may not.
	dir, err := os.MkdirTemp("", "ptcri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv, err := critest.Start(filepath.Join(dir, "cri.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, p := range pods {
		srv.Add(p)
	}
	return srv
}

// The lab's pod namespace is registered in a CRI server as pod default/web (and a host-network
// pod and a pod in another namespace beside it). Named on the command line, the pod is the
// flow's source; every hop in its namespace carries it, and the node's end of its veth leads to
// it, in the JSON, in the text and in `pathtrace show`.
func TestPodHops(t *testing.T) {
	topo := standard(t, "pods", 71)
	web := cri.Pod{Namespace: "default", Name: "web", Ready: true, IPs: []netip.Addr{topo.PodIP}, NetnsPath: topo.Pod.Path()}
	srv := criServer(t, web,
		cri.Pod{Namespace: "kube-system", Name: "kube-proxy-x7k2p", Ready: true, HostNetwork: true, IPs: []netip.Addr{topo.NodePodIP}},
		cri.Pod{Namespace: "shop", Name: "db", Ready: true, IPs: []netip.Addr{netip.MustParseAddr("10.71.9.9")}})
	pod, node, ext := topo.Pod.Inode(), topo.Node.Inode(), topo.Ext.Inode()

	s := start(t, "--src", "default/web", "--dst", topo.ExtIP.String(), "--proto", "icmp", "--cri-socket", srv.Socket())
	if got := ping(t, topo, 2); got != 2 {
		t.Fatalf("lab ping got %d replies, want 2", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()

	if want := netip.PrefixFrom(topo.PodIP, 32); tr.Filter.Src != want {
		t.Errorf("filter src = %s, want the pod's address %s", tr.Filter.Src, want)
	}
	if len(tr.Meta.Pods) != 1 {
		t.Fatalf("meta pods = %+v, want default/web", tr.Meta.Pods)
	}
	if p := tr.Meta.Pods[0]; p.Side != "src" || p.Key() != "default/web" || p.Traced != topo.PodIP ||
		!slices.Equal(p.IPs, web.IPs) || p.Netns != topo.Pod.Path() {
		t.Errorf("meta pod = %+v, want src default/web %s in %s", p, topo.PodIP, topo.Pod.Path())
	}

	var inPod, toPod, other int
	for _, p := range tr.Packets {
		for _, h := range p.Hops {
			wantPod, wantDev := "", ""
			switch {
			case h.Netns == pod:
				wantPod = "default/web"
				inPod++
			case h.Netns == node && h.Ifname == lab.NodePodIf:
				wantDev = "default/web"
				toPod++
			case h.Netns == node || h.Netns == ext:
				other++
			}
			if h.Pod != wantPod || h.DevicePod != wantDev {
				t.Errorf("packet #%d hop %s %s/%s labelled pod %q device %q, want %q %q",
					p.ID, h.Event, h.NetnsName, h.Ifname, h.Pod, h.DevicePod, wantPod, wantDev)
			}
		}
		if p.Flow == trace.Reply && p.Tuple.ICMPType == 0 && (p.Fate.Outcome != trace.Delivered || p.Fate.Pod != "default/web") {
			t.Errorf("reply #%d fate = %+v, want delivered in pod default/web", p.ID, p.Fate)
		}
	}
	if inPod == 0 || toPod == 0 || other == 0 {
		t.Errorf("hops in the pod: %d, on its veth's node end: %d, elsewhere: %d; want some of each", inPod, toPod, other)
	}

	requireLine(t, out, "src", "pod default/web ("+topo.PodIP.String()+")")
	requireLine(t, out, "pod default/web", "eth0", "xmit")
	requireLine(t, out, topo.Node.Name(), lab.NodePodIf+" -> pod default/web", "received")
	requireLine(t, out, "delivered in pod default/web")
	if show := s.showText(); show != out {
		t.Errorf("pathtrace show printed something else than the live run:\n%s", show)
	}
}

// Tracing by address, a CRI socket still labels the hops: here a drop on the node's end of
// the pod's veth (forwarding off), which the fate, the flow summary and the verdict name by
// the pod it leads to.
func TestPodLabelsByAddress(t *testing.T) {
	topo := standard(t, "podfwd", 72)
	srv := criServer(t, cri.Pod{Namespace: "default", Name: "web", Ready: true, IPs: []netip.Addr{topo.PodIP}, NetnsPath: topo.Pod.Path()})
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp", "--cri-socket", srv.Socket())
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node that does not forward", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()

	if len(tr.Meta.Pods) != 0 {
		t.Errorf("meta pods = %+v, want none: no pod was named", tr.Meta.Pods)
	}
	requireDrop(t, tr, out, topo.Node.Name(), lab.NodePodIf, "IP_INADDRERRORS", "ip_error")
	for _, p := range packets(tr, trace.Request) {
		if p.Fate.Pod != "" || p.Fate.DevicePod != "default/web" {
			t.Errorf("request #%d fate = %+v, want on the device leading to pod default/web", p.ID, p.Fate)
		}
		if p.Hops[0].Pod != "default/web" {
			t.Errorf("request #%d starts in %s unlabelled: %+v", p.ID, p.Hops[0].NetnsName, p.Hops[0])
		}
	}
	if len(tr.Flows) == 0 || len(tr.Flows[0].Drops) == 0 || tr.Flows[0].Drops[0].DevicePod != "default/web" {
		t.Errorf("flows = %+v, want the drop site leading to pod default/web", tr.Flows)
	}
	where := topo.Node.Name() + " " + lab.NodePodIf + " -> pod default/web"
	if !strings.Contains(tr.Verdict.Summary, where) {
		t.Errorf("verdict summary %q does not say %q", tr.Verdict.Summary, where)
	}
	requireLine(t, out, "DROPPED on "+where)
	requireLine(t, out, "dropped (request) on "+topo.Node.Name()+" "+lab.NodePodIf+" -> pod default/web")
	// The fix is still a command in the namespace, by its name, not the pod's.
	requireLine(t, out, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
	if show := s.showText(); show != out {
		t.Errorf("pathtrace show printed something else than the live run:\n%s", show)
	}
}

func pod(namespace, name string) cri.Pod {
	return cri.Pod{Namespace: namespace, Name: name, Ready: true, IPs: []netip.Addr{netip.MustParseAddr("10.244.0.9")}, NetnsPath: "/var/run/netns/cni-" + name}
}
