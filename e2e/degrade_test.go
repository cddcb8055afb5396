package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
	"github.com/pathtrace/pathtrace/trace"
)

// hasNetfilter says whether the kernel has nfnetlink: a NETLINK_NETFILTER socket can be made
// (the kernel loads the module if it has one to load).
func hasNetfilter() bool {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// requireDegraded checks that the trace and the header name what the run could not do.
func requireDegraded(t *testing.T, tr *trace.Trace, out string, parts ...string) {
	t.Helper()
	for _, d := range tr.Meta.Degraded {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(d, p)
		}
		if ok {
			requireLine(t, out, append([]string{"degraded"}, parts...)...)
			return
		}
	}
	t.Errorf("no degraded line has all of %q: %q", parts, tr.Meta.Degraded)
}

// notDegraded checks that no degraded line mentions what.
func notDegraded(t *testing.T, tr *trace.Trace, what string) {
	t.Helper()
	for _, d := range tr.Meta.Degraded {
		if strings.Contains(d, what) {
			t.Errorf("degraded line %q, but %s is there", d, what)
		}
	}
}

// A node without a CNI's or a firewall's rules may run a kernel with no netfilter at all
// (#15: Debian's 6.1 cloud kernel with only veth loaded made every run panic). The run traces,
// names the drop, and says nftables tracing is unavailable. `make vmtest`'s minimal case boots
// such a kernel and sets PATHTRACE_EXPECT_NO_NETFILTER; elsewhere the test checks the other
// side: with netfilter there, nothing is said about it.
func TestWithoutNetfilter(t *testing.T) {
	topo := standard(t, "nonf", 16)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	netfilter := hasNetfilter()
	if os.Getenv("PATHTRACE_EXPECT_NO_NETFILTER") != "" && netfilter {
		t.Fatal("PATHTRACE_EXPECT_NO_NETFILTER is set, but this kernel has nfnetlink")
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node with forwarding off", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "IP_INADDRERRORS", "ip_error")
	requireVerdict(t, tr, out, "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence{"net.ipv4.ip_forward", "0"}, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
	if netfilter {
		notDegraded(t, tr, "nftables")
		return
	}
	requireDegraded(t, tr, out, "nftables tracing unavailable: the kernel has no nfnetlink", "rule names not shown")
}

// hideEnv makes the test binary hide mounts and then exec pathtrace (see withHidden).
const hideEnv = "PATHTRACE_E2E_HIDE"

// withHidden runs pathtrace in a mount namespace of its own in which paths are hidden: a mount
// point is unmounted there ("umount:/sys/kernel/tracing"), or an empty tmpfs is mounted over a
// directory ("tmpfs:/run"). The test binary does it, as pathtrace's parent, before it execs
// pathtrace; the host's mounts are untouched.
func withHidden(ops ...string) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		cmd.Args = append([]string{os.Args[0]}, append([]string{binary}, cmd.Args[1:]...)...)
		cmd.Path = os.Args[0]
		cmd.Env = append(os.Environ(), hideEnv+"="+strings.Join(ops, ","))
		// Go makes the new namespace's mounts private before the child runs.
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
}

// hideAndExec carries out withHidden's operations in this process's (new) mount namespace,
// checks each path is hidden, and execs args. It returns only on failure.
func hideAndExec(ops, args []string) int {
	for _, op := range ops {
		kind, path, _ := strings.Cut(op, ":")
		var err error
		switch kind {
		case "umount":
			// Under an automount (debugfs's tracing) or mounted twice: until nothing is left.
			for err == nil {
				err = unix.Unmount(path, unix.MNT_DETACH)
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				err = nil
			}
			var fs unix.Statfs_t
			if unix.Statfs(path, &fs) == nil && slices.Contains([]int64{unix.TRACEFS_MAGIC, unix.DEBUGFS_MAGIC, unix.BPF_FS_MAGIC}, fs.Type) {
				err = fmt.Errorf("still mounted (file system %#x)", fs.Type)
			}
		case "tmpfs":
			err = unix.Mount("tmpfs", path, "tmpfs", 0, "mode=0755")
		default:
			err = fmt.Errorf("unknown operation %q", kind)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "hide %s: %v\n", op, err)
			return 3
		}
	}
	err := unix.Exec(args[0], args, slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, hideEnv+"=") }))
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", args[0], err)
	return 3
}

// Raw tracepoints need neither tracefs nor bpffs, and pathtrace pins nothing: without them a
// run traces as before and says nothing is missing. Without /run (no /run/netns, no
// /var/run/netns) no namespace has a name: the run traces and says so.
func TestWithoutMounts(t *testing.T) {
	topo := standard(t, "nomnt", 17)
	for _, c := range []struct {
		name     string
		hide     []string
		degraded []string // the line that must say what is missing; nil: none may
		absent   string   // what no degraded line may mention
	}{
		// debugfs first: tracefs under it is an automount, which a look at the path after
		// unmounting it alone mounts again (as a VM's kernel does).
		{"tracefs", []string{"umount:/sys/kernel/debug", "umount:/sys/kernel/tracing", "umount:/sys/kernel/debug/tracing"}, nil, "tracefs"},
		{"bpffs", []string{"umount:/sys/fs/bpf"}, nil, "bpf"},
		{"run-netns", []string{"tmpfs:/run"}, []string{"no named network namespaces", "/run/netns", "netns:<inode>"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startWrapped(t, withHidden(c.hide...), "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
			if got := ping(t, topo, 2); got != 2 {
				t.Fatalf("lab ping got %d replies, want 2", got)
			}
			tr := s.stop(syscall.SIGINT)
			reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8)
			if len(reqs) < 2 {
				t.Fatalf("%d echo requests traced, want 2", len(reqs))
			}
			node := topo.Node.Name()
			if c.degraded != nil {
				requireDegraded(t, tr, s.stdout.String(), c.degraded...)
				node = fmt.Sprintf("netns:%d", topo.Node.Inode())
			} else {
				notDegraded(t, tr, c.absent)
			}
			for _, p := range reqs {
				if p.Fate.Outcome != trace.Delivered || !slices.Contains(netnsSeen(p), node) {
					t.Errorf("request #%d crossed %v with fate %+v, want delivered through %s", p.ID, netnsSeen(p), p.Fate, node)
				}
			}
		})
	}
}

// Without CAP_NET_ADMIN (dropped from the bounding set, as a container without it has) the
// BPF side works (CAP_SYS_ADMIN), and so do the reads behind the verdict; nf_tables answers
// nothing, and the run says rule names are not shown.
func TestWithoutNetAdmin(t *testing.T) {
	topo := standard(t, "nocap", 18)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv to drop CAP_NET_ADMIN with")
	}
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	s := startWrapped(t, func(cmd *exec.Cmd) {
		cmd.Args = append([]string{setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", "--", binary}, cmd.Args[1:]...)
		cmd.Path = setpriv
	}, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 0 {
		t.Fatalf("ping got %d replies through a node with forwarding off", got)
	}
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	requireDrop(t, tr, out, topo.Node.Name(), topo.NodePodIf, "IP_INADDRERRORS", "ip_error")
	requireVerdict(t, tr, out, "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence{"net.ipv4.ip_forward", "0"}, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
	requireDegraded(t, tr, out, "nftables tracing unavailable: nf_tables needs CAP_NET_ADMIN", "rule names not shown")
}

// A namespace deleted mid-run (a pod's, say): the run goes on, the packets before are named as
// they were, and pathtrace lets the namespace go: its nftables watch there held it alive, and
// with it the veth whose peer is on the node, which went on answering pings.
func TestNamespaceVanishes(t *testing.T) {
	topo := standard(t, "gone", 19)
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	if got := ping(t, topo, 2); got != 2 {
		t.Fatalf("lab ping got %d replies, want 2", got)
	}
	ext, extIno := topo.Ext.Name(), topo.Ext.Inode()
	if err := topo.Ext.Delete(); err != nil {
		t.Fatal(err)
	}
	// Once nothing holds it, the kernel destroys the namespace and the veth pair with it.
	gone := false
	for deadline := time.Now().Add(5 * time.Second); !gone && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err := topo.Node.Do(func() error { _, err := netlink.LinkByName(topo.NodeExtIf); return err })
		gone = errors.As(err, new(netlink.LinkNotFoundError))
	}
	if !gone {
		t.Errorf("%s in %s still exists 5s after %s was deleted: pathtrace holds the namespace", topo.NodeExtIf, topo.Node.Name(), ext)
	}
	if n, _ := topo.Pod.Ping(topo.ExtIP.String(), 0x4242, 1, 100*time.Millisecond, 300*time.Millisecond); n != 0 {
		t.Errorf("%d replies from the deleted namespace", n)
	}
	tr := s.stop(syscall.SIGINT)
	reqs := testutil.ICMPOfType(packets(tr, trace.Request), 8)
	if len(reqs) < 3 {
		t.Fatalf("%d echo requests traced, want the 2 before the namespace went and 1 after", len(reqs))
	}
	for i, p := range reqs {
		before := i < 2
		if before && (p.Fate.Outcome != trace.Delivered || p.Fate.NetnsName != ext) {
			t.Errorf("request #%d before the deletion: fate %+v, want delivered in %s", p.ID, p.Fate, ext)
		}
		if !before && (p.Fate.Netns == extIno || p.Fate.Outcome == trace.Delivered) {
			t.Errorf("request #%d after the deletion: fate %+v, want it not delivered", p.ID, p.Fate)
		}
	}
}

// A device renamed mid-run: a hop carries the name the device had when the packet crossed it
// (the kernel reads it), the drop is still found and explained.
func TestDeviceRenamed(t *testing.T) {
	topo := standard(t, "rename", 20)
	if err := topo.Node.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	s := start(t, "--src", topo.PodIP.String(), "--dst", topo.ExtIP.String(), "--proto", "icmp")
	ping(t, topo, 1)
	const renamed = "veth-renamed"
	err := topo.Node.Do(func() error {
		l, err := netlink.LinkByName(topo.NodePodIf)
		if err != nil {
			return err
		}
		return errors.Join(netlink.LinkSetDown(l), netlink.LinkSetName(l, renamed), netlink.LinkSetUp(l))
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pod's end went down with its peer: wait for both ends to carry packets again (each
	// end's carrier is taken up by linkwatch on its own, up to a second apart).
	deadline := time.Now().Add(5 * time.Second)
	for {
		up := func(ns *lab.NS, dev string) bool {
			var l netlink.Link
			err := ns.Do(func() (err error) { l, err = netlink.LinkByName(dev); return err })
			return err == nil && l.Attrs().OperState == netlink.OperUp
		}
		if up(topo.Node, renamed) && up(topo.Pod, lab.PodIf) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ping(t, topo, 1)
	// The pod's neighbour entry went with its carrier: the request waits for ARP, whose first
	// try a slow VM may send before the qdisc is back; its retry comes a second later.
	time.Sleep(2 * time.Second)
	tr := s.stop(syscall.SIGINT)
	out := s.stdout.String()
	names := map[string]bool{}
	for _, p := range testutil.ICMPOfType(packets(tr, trace.Request), 8) {
		if p.Fate.Outcome != trace.Dropped || p.Fate.NetnsName != topo.Node.Name() {
			t.Errorf("request #%d fate %+v, want dropped in %s", p.ID, p.Fate, topo.Node.Name())
		}
		names[p.Fate.Ifname] = true
	}
	if !names[topo.NodePodIf] || !names[renamed] {
		t.Errorf("drops on %v, want one on %s (before) and one on %s (after)", names, topo.NodePodIf, renamed)
	}
	requireLine(t, out, topo.Node.Name(), renamed, "DROPPED")
	requireVerdict(t, tr, out, "forwarding disabled (net.ipv4.ip_forward=0)",
		evidence{"net.ipv4.ip_forward", "0"}, "ip netns exec "+topo.Node.Name()+" sysctl -w net.ipv4.ip_forward=1")
}
