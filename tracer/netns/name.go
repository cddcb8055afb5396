package netns

import (
	"fmt"
	"sync"
	"time"
)

// Namer names namespaces by inode: "host" for the host's, the name under a named-namespace
// directory where one exists, and "netns:<inode>" otherwise. It caches names and rescans the
// directories when it meets an unknown inode, so namespaces created after the trace started
// are still named.
type Namer struct {
	hostIno  uint32
	dirs     []string
	mu       sync.Mutex
	names    map[uint32]string
	lastScan time.Time
	// unnamed are the "netns:<inode>" names made so far: one string per namespace, not one
	// per event.
	unnamed map[uint32]string
	// gone are the names of namespaces a scan no longer found, with when they went: the
	// events of their last moments are often decoded after they are deleted (the pipeline
	// lags the kernel), and must still be named. A new namespace that takes the inode number
	// replaces the name at the next scan; a gone name is kept goneTTL at most.
	gone map[uint32]goneName
}

type goneName struct {
	name string
	at   time.Time
}

// goneTTL is how long a vanished namespace's name still names its inode.
const goneTTL = 10 * time.Second

// NewNamer reads the host namespace's inode from the first readable of hostNetns (Host) and
// scans dirs (normally DefaultDirs).
func NewNamer(hostNetns []string, dirs ...string) (*Namer, error) {
	_, ino, err := Host(hostNetns)
	if err != nil {
		return nil, err
	}
	r := &Namer{hostIno: ino, dirs: dirs, names: map[uint32]string{}}
	r.scan()
	return r, nil
}

// scan rebuilds the names from scratch: the kernel hands a deleted namespace's inode number to
// the next new one, so an old name must not outlive its namespace.
func (r *Namer) scan() {
	now := time.Now()
	r.lastScan = now
	old := r.names
	r.names = map[uint32]string{}
	for _, n := range List(r.dirs...) {
		if _, seen := r.names[n.Inode]; !seen {
			r.names[n.Inode] = n.Name
		}
	}
	for ino, g := range r.gone {
		if _, back := r.names[ino]; back || now.Sub(g.at) > goneTTL {
			delete(r.gone, ino)
		}
	}
	for ino, name := range old {
		if _, still := r.names[ino]; !still {
			if r.gone == nil {
				r.gone = map[uint32]goneName{}
			}
			if len(r.gone) < 4096 {
				r.gone[ino] = goneName{name: name, at: now}
			}
		}
	}
}

// Name names the namespace with inode ino.
func (r *Namer) Name(ino uint32) string {
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
	if g, ok := r.gone[ino]; ok && time.Since(g.at) <= goneTTL {
		return g.name
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
func (r *Namer) Host() uint32 { return r.hostIno }
