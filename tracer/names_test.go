package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pathtrace/pathtrace/tracer/netns"
)

// A namespace's name is the resolver's, asked again once netnsTTL of event time has passed
// since: a namespace named after the trace started (ip netns add, a pod's) gets its name.
// Any file stands in for a namespace, as in the netns package's own tests.
func TestNetnsNameCache(t *testing.T) {
	dir := t.TempDir()
	r, err := netns.NewNamer([]string{"/proc/self/ns/net"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ino, err := netns.Inode(outside)
	if err != nil {
		t.Fatal(err)
	}
	unnamed := fmt.Sprintf("netns:%d", ino)

	var c nameCache
	const t0 = uint64(5_000_000_000)
	if got := c.netnsName(ino, t0, r); got != unnamed {
		t.Fatalf("before it is named: %q, want %q", got, unnamed)
	}
	if err := os.Link(outside, filepath.Join(dir, "web")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // past the resolver's own rescan interval
	if got := c.netnsName(ino, t0+netnsTTL/2, r); got != unnamed {
		t.Errorf("within the TTL: %q, want the cached %q", got, unnamed)
	}
	if got := c.netnsName(ino, t0+netnsTTL, r); got != "web" {
		t.Errorf("a TTL on: %q, want web", got)
	}
	// An event that arrives out of time order (another CPU's, earlier) asks again rather than
	// trusting a name from its future.
	if got := c.netnsName(ino, t0, r); got != "web" {
		t.Errorf("earlier event: %q, want web", got)
	}
	if got := c.netnsName(0, t0, r); got != "" {
		t.Errorf("no namespace: %q, want none", got)
	}
}
