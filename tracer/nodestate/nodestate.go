// Package nodestate reads the state of a node's network namespaces that a drop verdict rests
// on: sysctls, tc/tcx BPF programs, neighbour entries, routes and checksum offload. Every
// reading happens inside the namespace where the packet died, because the same device name,
// sysctl or route means something else in the namespace next door.
//
// Namespaces are named by inode, as the tracer reports them (net->ns.inum), and found and
// entered through tracer/netns.
package nodestate

import "github.com/pathtrace/pathtrace/tracer/netns"

// Reader reads the state of network namespaces named by their inode.
type Reader struct{ ns *netns.Finder }

// New returns a Reader that looks for namespaces in netnsDirs (netns.DefaultDirs when none are
// given) and in the processes under hostProc: "/proc" normally, "/host/proc" from a debug pod
// that mounts the host's /proc there.
func New(hostProc string, netnsDirs ...string) *Reader {
	return &Reader{ns: netns.NewFinder(hostProc, netnsDirs...)}
}

// Do runs fn on a locked OS thread inside the namespace with inode ino (netns.File.Do).
func (r *Reader) Do(ino uint32, fn func() error) error { return r.ns.Do(ino, fn) }
