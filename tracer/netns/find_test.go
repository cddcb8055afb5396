package netns

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/internal/testutil"
)

// standard builds the lab's pod/node/ext topology for one test.
func standard(t *testing.T, prefix string, net uint8) *lab.Topology {
	t.Helper()
	testutil.RequireRoot(t, "create network namespaces")
	topo, err := lab.Standard(prefix, net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	return topo
}

func selfNetns(t *testing.T) uint32 {
	t.Helper()
	ino, err := Inode("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func TestDoUnknownInode(t *testing.T) {
	r := NewFinder("/proc", t.TempDir())
	const ino = 12345 // nsfs numbers start at 0xf0000000
	called := false
	err := r.Do(ino, func() error { called = true; return nil })
	if err == nil || !strings.Contains(err.Error(), "12345") {
		t.Fatalf("Do(%d) = %v, want an error naming the inode", ino, err)
	}
	if called {
		t.Error("fn ran although the namespace was not found")
	}
	if _, err := r.Path(ino); err == nil || !strings.Contains(err.Error(), "netns 12345") {
		t.Errorf("Path of an unknown netns: %v", err)
	}
}

func TestDoOwnNamespaceThroughSelf(t *testing.T) {
	testutil.RequireRoot(t, "enter a network namespace")
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		t.Skip("no /proc/thread-self")
	}
	// Neither the directories nor hostProc know us: only /proc/self is left.
	r := NewFinder(t.TempDir()+"/proc", t.TempDir())
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
	testutil.RequireRoot(t, "enter a network namespace")
	r := NewFinder("/proc")
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
	r := NewFinder("/proc")
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
	r := NewFinder(proc, t.TempDir())
	var inside uint32
	err := r.Do(topo.Node.Inode(), func() error {
		var err error
		inside, err = Inode("/proc/thread-self/ns/net")
		return err
	})
	if err != nil || inside != topo.Node.Inode() {
		t.Fatalf("entered netns %d through %s, %v; want node's %d", inside, proc, err, topo.Node.Inode())
	}
	if got, want := r.paths[topo.Node.Inode()], proc+"/4242/ns/net"; got != want {
		t.Errorf("found at %q, want %q", got, want)
	}
	if got, err := r.Path(topo.Node.Inode()); err != nil || got != proc+"/4242/ns/net" {
		t.Errorf("Path = %q, %v; want %s", got, err, proc+"/4242/ns/net")
	}
	// The pod's namespace is nowhere this Finder looks.
	if _, err := r.Path(topo.Pod.Inode()); err == nil {
		t.Error("pod namespace found although no path leads to it")
	}
}

func TestDoNamedNamespace(t *testing.T) {
	topo := standard(t, "ptns-named", 234)
	r := NewFinder("/proc")
	if err := r.Do(topo.Ext.Inode(), func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := r.paths[topo.Ext.Inode()], topo.Ext.Path(); got != want {
		t.Errorf("found at %q, want the named path %q", got, want)
	}
}
