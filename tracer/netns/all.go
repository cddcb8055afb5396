package netns

import (
	"os"
	"path/filepath"
)

// All lists every namespace the Finder can reach, once each: the named ones first (with their
// names), then those only a process holds (Name ""). It is for questions about the whole node
// ("which namespace owns this address?", "where is this veth's peer?"), not for every reading.
func (f *Finder) All() []Named {
	seen := map[uint32]bool{}
	var out []Named
	for _, n := range List(f.dirs...) {
		if !seen[n.Inode] {
			seen[n.Inode] = true
			out = append(out, n)
		}
	}
	entries, _ := os.ReadDir(f.proc)
	for _, e := range entries {
		if !isPID(e.Name()) {
			continue
		}
		p := filepath.Join(f.proc, e.Name(), "ns", "net")
		if ino, err := Inode(p); err == nil && !seen[ino] {
			seen[ino] = true
			out = append(out, Named{Path: p, Inode: ino})
		}
	}
	return out
}

// HostInode is the inode of the namespace of the Finder's /proc's first process (the host's),
// 0 if it cannot be read.
func (f *Finder) HostInode() uint32 {
	ino, _ := Inode(filepath.Join(f.proc, "1", "ns", "net"))
	return ino
}
