package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
)

func selfIno(t *testing.T) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestHostFromFirstReadableCandidate(t *testing.T) {
	r, err := NewNamer([]string{"/nonexistent", "/proc/self/ns/net"})
	if err != nil {
		t.Fatalf("NewNamer: %v", err)
	}
	self := selfIno(t)
	if r.Host() != self {
		t.Errorf("Host() = %d, want our netns %d", r.Host(), self)
	}
	if got := r.Name(self); got != "host" {
		t.Errorf("Name(host) = %q, want host", got)
	}
	if got := r.Name(0); got != "" {
		t.Errorf("Name(0) = %q, want empty", got)
	}
	unknown := self + 12345
	if got, want := r.Name(unknown), fmt.Sprintf("netns:%d", unknown); got != want {
		t.Errorf("Name(%d) = %q, want %q", unknown, got, want)
	}
	// Asking again (past the rescan interval) still gives the fallback name.
	time.Sleep(150 * time.Millisecond)
	if got, want := r.Name(unknown), fmt.Sprintf("netns:%d", unknown); got != want {
		t.Errorf("Name(%d) again = %q, want %q", unknown, got, want)
	}
}

func TestInode(t *testing.T) {
	got, err := Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got != selfIno(t) || got == 0 {
		t.Errorf("Inode = %d, want %d", got, selfIno(t))
	}
	if _, err := Inode("/nonexistent"); err == nil {
		t.Error("Inode of a missing file: want an error")
	}
}

func TestAllCandidatesFail(t *testing.T) {
	r, err := NewNamer([]string{"/nonexistent/a", "/nonexistent/b"}, t.TempDir())
	if err == nil {
		t.Fatalf("NewNamer = %+v, want an error", r)
	}
	if r != nil {
		t.Errorf("NewNamer returned a Namer with its error")
	}
	for _, s := range []string{"host network namespace", "/nonexistent/a", "/nonexistent/b"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
}

func TestNoCandidates(t *testing.T) {
	r, err := NewNamer(nil)
	if err == nil {
		t.Fatalf("NewNamer(nil) = %+v, want an error", r)
	}
	if !strings.Contains(err.Error(), "host network namespace") {
		t.Errorf("error %q", err)
	}
}

func inodeOf(t *testing.T, path string) uint32 {
	t.Helper()
	ino, err := Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// Named namespaces are files under the dirs: any file stands in for one, so the scan and rescan
// paths can be tested without root.
func TestNamesFromDirs(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(d1, "red"), filepath.Join(d2, "blue")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The same namespace under both dirs (as /run/netns and /var/run/netns often are): the
	// first dir's name wins.
	if err := os.Link(filepath.Join(d1, "red"), filepath.Join(d2, "red-alias")); err != nil {
		t.Fatal(err)
	}
	r, err := NewNamer([]string{"/proc/self/ns/net"}, filepath.Join(t.TempDir(), "missing"), d1, d2)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Name(inodeOf(t, filepath.Join(d1, "red"))); got != "red" {
		t.Errorf("red named %q", got)
	}
	if got := r.Name(inodeOf(t, filepath.Join(d2, "blue"))); got != "blue" {
		t.Errorf("blue named %q", got)
	}
}

func TestRescan(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	r, err := NewNamer([]string{"/proc/self/ns/net"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Created after the resolver: unknown until a rescan.
	path := filepath.Join(dir, "late")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, path)
	fallback := fmt.Sprintf("netns:%d", ino)

	// Within 100ms of the last scan there is no rescan. Only checked when this test got here
	// well within the interval, so a slow machine does not make it flaky.
	if time.Since(start) < 50*time.Millisecond {
		if got := r.Name(ino); got != fallback {
			t.Errorf("Name right after NewNamer = %q, want %q (no rescan yet)", got, fallback)
		}
	}

	time.Sleep(150 * time.Millisecond)
	if got := r.Name(ino); got != "late" {
		t.Errorf("Name after 150ms = %q, want late (rescan)", got)
	}

}

// TestNamedNetns creates a namespace the way `ip netns add` does, after the resolver started,
// and checks the resolver finds it under /run/netns.
func TestNamedNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	r, err := NewNamer([]string{"/nonexistent", "/proc/self/ns/net"}, "/run/netns", "/var/run/netns")
	if err != nil {
		t.Fatal(err)
	}

	name := fmt.Sprintf("pt-nsname-%d", os.Getpid())
	ino := func() uint32 {
		// NewNamed switches this thread into the new namespace: pin the goroutine to it and
		// switch back before anything else runs here.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		h, err := vnetns.NewNamed(name)
		if err != nil {
			if serr := vnetns.Set(orig); serr != nil {
				panic(fmt.Sprintf("cannot return to the original netns: %v", serr))
			}
			t.Fatalf("NewNamed(%s): %v", name, err)
		}
		t.Cleanup(func() {
			if err := vnetns.DeleteNamed(name); err != nil {
				t.Errorf("DeleteNamed(%s): %v", name, err)
			}
		})
		defer h.Close()
		if err := vnetns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original netns: %v", err))
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(h), &st); err != nil {
			t.Fatal(err)
		}
		return uint32(st.Ino)
	}()

	self := selfIno(t)
	if ino == self {
		t.Fatalf("new namespace has our inode %d", ino)
	}
	if got := inodeOf(t, filepath.Join("/run/netns", name)); got != ino {
		t.Fatalf("/run/netns/%s has inode %d, the namespace %d", name, got, ino)
	}

	time.Sleep(150 * time.Millisecond) // past the rescan interval
	if got := r.Name(ino); got != name {
		t.Errorf("Name(%d) = %q, want %q", ino, got, name)
	}
	if got := r.Name(self); got != "host" {
		t.Errorf("Name(self) = %q after the namespace round trip, want host", got)
	}

	// A resolver started now finds it in its first scan, without waiting.
	r2, err := NewNamer([]string{"/proc/self/ns/net"}, "/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Name(ino); got != name {
		t.Errorf("new resolver: Name(%d) = %q, want %q", ino, got, name)
	}
}

// With no candidates at all the error should still read well.
func TestNoCandidatesMessage(t *testing.T) {
	_, err := NewNamer(nil)
	if err == nil || strings.Contains(err.Error(), "%!") {
		t.Errorf("error %q", err)
	}
}

// The kernel reuses a freed namespace's inode number for the next namespace, so a cached name
// must not outlive its namespace. Whether the kernel reuses a number right away depends on
// what else creates namespaces meanwhile, so the reuse is played with a file: the inode stays,
// its name changes.
func TestReusedInodeGetsNewName(t *testing.T) {
	old, ino, r := namedFile(t, "pod-a")
	dir := filepath.Dir(old)
	if err := os.Rename(old, filepath.Join(dir, "pod-b")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := r.Name(ino); got != "pod-b" {
		t.Errorf("Name(%d) = %q after the name changed, want pod-b", ino, got)
	}
}

// A namespace deleted while the trace runs keeps its name for the events decoded after it went
// (the pipeline lags the kernel), for a while; then its inode is unnamed again.
func TestNamerKeepsAVanishedName(t *testing.T) {
	path, ino, r := namedFile(t, "pod-a")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r.lastScan = time.Now().Add(-2 * time.Second) // the next Name rescans
	if got := r.Name(ino); got != "pod-a" {
		t.Errorf("just after it went: Name = %q, want pod-a", got)
	}
	g := r.gone[ino]
	g.at = time.Now().Add(-goneTTL - time.Second)
	r.gone[ino] = g
	if got := r.Name(ino); got != fmt.Sprintf("netns:%d", ino) {
		t.Errorf("long after it went: Name = %q, want netns:%d", got, ino)
	}
}

// namedFile plays a named namespace with a file called name in a directory of its own, and
// returns its path, its inode and a Namer of that directory that already names it.
func namedFile(t *testing.T, name string) (string, uint32, *Namer) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ino, err := Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewNamer([]string{"/proc/self/ns/net"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Name(ino); got != name {
		t.Fatalf("Name(%d) = %q, want %s", ino, got, name)
	}
	return path, ino, r
}
