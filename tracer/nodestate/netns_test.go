package nodestate

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func selfNetns(t *testing.T) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestDoUnknownInode(t *testing.T) {
	r := New("/proc", t.TempDir())
	const ino = 12345 // nsfs numbers start at 0xf0000000
	called := false
	err := r.Do(ino, func() error { called = true; return nil })
	if err == nil || !strings.Contains(err.Error(), "12345") {
		t.Fatalf("Do(%d) = %v, want an error naming the inode", ino, err)
	}
	if called {
		t.Error("fn ran although the namespace was not found")
	}
	if _, err := r.Sysctl(ino, "net.ipv4.ip_forward"); err == nil || !strings.Contains(err.Error(), "netns 12345") {
		t.Errorf("Sysctl in unknown netns: %v", err)
	}
}

func TestDoOwnNamespaceThroughSelf(t *testing.T) {
	needRoot(t, "enter a network namespace")
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		t.Skip("no /proc/thread-self")
	}
	// Neither the directories nor hostProc know us: only /proc/self is left.
	r := New(t.TempDir()+"/proc", t.TempDir())
	self := selfNetns(t)
	var inside uint32
	err := r.Do(self, func() error {
		var st unix.Stat_t
		err := unix.Stat("/proc/thread-self/ns/net", &st)
		inside = uint32(st.Ino)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != self {
		t.Errorf("ran in netns %d, want %d", inside, self)
	}
}

func TestDoReturnsErrorsAndPanics(t *testing.T) {
	needRoot(t, "enter a network namespace")
	r := New("/proc")
	self := selfNetns(t)
	want := errors.New("boom")
	if err := r.Do(self, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do = %v, want %v", err, want)
	}
	if err := r.Do(self, func() error { panic("bad reading") }); err == nil || !strings.Contains(err.Error(), "bad reading") {
		t.Errorf("Do with a panic = %v, want an error", err)
	}
}

func TestDoEntersAndLeaves(t *testing.T) {
	topo := standard(t, "ptns-do", 230)
	r := New("/proc")
	before := selfNetns(t)
	for range 20 {
		var inside uint32
		err := r.Do(topo.Node.Inode(), func() error {
			var st unix.Stat_t
			err := unix.Stat("/proc/thread-self/ns/net", &st)
			inside = uint32(st.Ino)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside != topo.Node.Inode() {
			t.Fatalf("ran in netns %d, want node's %d", inside, topo.Node.Inode())
		}
	}
	if after := selfNetns(t); after != before {
		t.Errorf("test goroutine's thread moved from netns %d to %d", before, after)
	}
}

func TestDoFindsProcessNamespace(t *testing.T) {
	topo := standard(t, "ptns-proc", 233)
	// A stand-in for /host/proc whose only "process" lives in the node's namespace, and no
	// named-namespace directories: the namespace can only be found through the processes.
	proc := t.TempDir()
	if err := os.MkdirAll(proc+"/4242/ns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(topo.Node.Path(), proc+"/4242/ns/net"); err != nil {
		t.Fatal(err)
	}
	// A placeholder that is not a namespace must not be taken for one.
	if err := os.MkdirAll(proc+"/self", 0o755); err != nil {
		t.Fatal(err)
	}
	r := New(proc, t.TempDir())
	v, err := r.Sysctl(topo.Node.Inode(), "net.ipv4.ip_forward")
	if err != nil || v != "1" {
		t.Fatalf("node ip_forward through %s = %q, %v; want 1", proc, v, err)
	}
	if got, want := r.paths[topo.Node.Inode()], proc+"/4242/ns/net"; got != want {
		t.Errorf("found at %q, want %q", got, want)
	}
	// The pod's namespace is nowhere this Reader looks.
	if _, err := r.Sysctl(topo.Pod.Inode(), "net.ipv4.ip_forward"); err == nil {
		t.Error("pod namespace found although no path leads to it")
	}
}

func TestDoNamedNamespace(t *testing.T) {
	topo := standard(t, "ptns-named", 234)
	r := New("/proc")
	if err := r.Do(topo.Ext.Inode(), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := r.paths[topo.Ext.Inode()], topo.Ext.Path(); got != want {
		t.Errorf("found at %q, want the named path %q", got, want)
	}
}
