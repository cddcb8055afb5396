package netns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	f, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if f.Inode() != want || f.Path() != "/proc/self/ns/net" || f.Fd() < 0 {
		t.Errorf("Open = inode %d path %q fd %d, want inode %d", f.Inode(), f.Path(), f.Fd(), want)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := f.Do(func() error { return nil }); err == nil {
		t.Error("Do on a closed File: want an error")
	}
}

// A placeholder left in /run/netns by a crashed `ip netns add` (or a namespace mounted on the
// node after a debug pod started, seen from the pod) is a plain file: never a namespace.
func TestOpenRefusesPlainFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cni-1234")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "not a namespace file") {
		t.Errorf("Open(plain file) = %v, want not a namespace file", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("Open(missing) = nil error")
	}
	ino, err := Inode(p)
	if err != nil {
		t.Fatal(err)
	}
	if isNetns(p, ino) {
		t.Error("isNetns(plain file) = true")
	}
	if _, err := open("/proc/self/ns/net", ino); err == nil || !strings.Contains(err.Error(), "no longer netns") {
		t.Errorf("open with the wrong inode = %v", err)
	}
}

func TestListAndHost(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(d1, "red"), filepath.Join(d2, "blue")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := List(filepath.Join(t.TempDir(), "missing"), d1, d2)
	if len(got) != 2 || got[0].Name != "red" || got[1].Name != "blue" || got[0].Path != filepath.Join(d1, "red") || got[0].Inode == 0 {
		t.Errorf("List = %+v, want red then blue", got)
	}

	if !AnyDir(filepath.Join(t.TempDir(), "missing"), d1) || AnyDir(filepath.Join(t.TempDir(), "missing"), filepath.Join(d1, "red")) {
		t.Error("AnyDir: want true with a directory among them, false with none (a file is not one)")
	}

	p, ino, err := Host([]string{"/nonexistent", "/proc/self/ns/net"})
	self, _ := Inode("/proc/self/ns/net")
	if err != nil || p != "/proc/self/ns/net" || ino != self {
		t.Errorf("Host = %q %d %v, want /proc/self/ns/net %d", p, ino, err, self)
	}
	if _, _, err := Host(nil); err == nil || !strings.Contains(err.Error(), "host network namespace") {
		t.Errorf("Host(nil) = %v", err)
	}
}
