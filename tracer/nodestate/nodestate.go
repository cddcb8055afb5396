// Package nodestate reads the state of a node's network namespaces that a drop verdict rests
// on: sysctls, tc/tcx BPF programs, neighbour entries, routes and checksum offload. Every
// reading happens inside the namespace where the packet died, because the same device name,
// sysctl or route means something else in the namespace next door.
//
// Namespaces are named by inode, as the tracer reports them (net->ns.inum).
package nodestate

import (
	"path/filepath"
	"sync"
)

// DefaultNetnsDirs are where iproute2 and most CNI runtimes bind-mount named namespaces.
var DefaultNetnsDirs = []string{"/run/netns", "/var/run/netns"}

// Reader reads the state of network namespaces named by their inode.
type Reader struct {
	proc string
	dirs []string

	mu sync.Mutex
	// paths remembers where each namespace was last found: scanning every process for every
	// reading would cost far more than the reading itself. A remembered path is checked again
	// on each use, since inode numbers are recycled and processes come and go.
	paths map[uint32]string
}

// New returns a Reader that looks for namespaces in netnsDirs (DefaultNetnsDirs when none are
// given) and in the processes under hostProc: "/proc" normally, "/host/proc" from a debug pod
// that mounts the host's /proc there.
func New(hostProc string, netnsDirs ...string) *Reader {
	if hostProc == "" {
		hostProc = "/proc"
	}
	if len(netnsDirs) == 0 {
		netnsDirs = DefaultNetnsDirs
	}
	return &Reader{
		proc:  filepath.Clean(hostProc),
		dirs:  append([]string(nil), netnsDirs...),
		paths: map[uint32]string{},
	}
}
