// Package netnsname names network namespaces by inode: "host" for the init namespace, the
// name under /run/netns where one exists, and "netns:<inode>" otherwise.
package netnsname

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Resolver caches names and rescans the netns directories when it meets an unknown inode, so
// namespaces created after the trace started are still named.
type Resolver struct {
	hostIno  uint32
	dirs     []string
	mu       sync.Mutex
	names    map[uint32]string
	lastScan time.Time
	// unnamed are the "netns:<inode>" names made so far: one string per namespace, not one
	// per event.
	unnamed map[uint32]string
}

// HostCandidates are where the host namespace is looked for, best first. PID 1's is the host's
// even when pathtrace runs in a pod; some sandboxes deny reading it, and then our own
// namespace is the best remaining guess (pathtrace runs with the host network).
var HostCandidates = []string{"/proc/1/ns/net", "/proc/self/ns/net"}

// New reads the host namespace's inode from the first readable of hostNetns and scans dirs
// (normally /run/netns and /var/run/netns).
func New(hostNetns []string, dirs ...string) (*Resolver, error) {
	var ino uint32
	var errs []error
	for _, p := range hostNetns {
		i, err := inode(p)
		if err == nil {
			ino = i
			break
		}
		errs = append(errs, err)
	}
	if ino == 0 {
		if len(errs) == 0 {
			return nil, errors.New("host network namespace: no path to find it at")
		}
		return nil, fmt.Errorf("host network namespace: %w", errors.Join(errs...))
	}
	r := &Resolver{hostIno: ino, dirs: dirs, names: map[uint32]string{}}
	r.scan()
	return r, nil
}

func inode(path string) (uint32, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode", path)
	}
	return uint32(st.Ino), nil
}

// Inode returns the inode of a namespace file such as /proc/self/ns/net.
func Inode(path string) (uint32, error) { return inode(path) }

// scan rebuilds the names from scratch: the kernel hands a deleted namespace's inode number to
// the next new one, so an old name must not outlive its namespace.
func (r *Resolver) scan() {
	r.lastScan = time.Now()
	r.names = map[uint32]string{}
	for _, d := range r.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if ino, err := inode(filepath.Join(d, e.Name())); err == nil {
				if _, seen := r.names[ino]; !seen {
					r.names[ino] = e.Name()
				}
			}
		}
	}
}

// Name names the namespace with inode ino.
func (r *Resolver) Name(ino uint32) string {
	if ino == 0 {
		return ""
	}
	if ino == r.hostIno {
		return "host"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Rescan at most every 100ms when the inode is unknown, and every second anyway, so an
	// unnamed namespace does not cost a directory walk per event and a reused inode is renamed.
	n, ok := r.names[ino]
	if age := time.Since(r.lastScan); (!ok && age > 100*time.Millisecond) || age > time.Second {
		r.scan()
		n, ok = r.names[ino]
	}
	if ok {
		return n
	}
	if n, ok := r.unnamed[ino]; ok {
		return n
	}
	if r.unnamed == nil || len(r.unnamed) >= 4096 {
		r.unnamed = map[uint32]string{}
	}
	n = fmt.Sprintf("netns:%d", ino)
	r.unnamed[ino] = n
	return n
}

// Host is the host namespace's inode.
func (r *Resolver) Host() uint32 { return r.hostIno }
