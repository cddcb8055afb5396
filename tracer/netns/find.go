package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Named is one entry of a named-namespace directory.
type Named struct {
	Name  string // the entry's name: what `ip netns` calls the namespace
	Path  string
	Inode uint32
}

// List returns the entries of dirs, in order, with their inodes; a directory that does not
// exist (no namespace was ever named) or an entry gone meanwhile is skipped. Entries are not
// checked to be namespaces: Open does that.
func List(dirs ...string) []Named {
	var out []Named
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if ino, err := Inode(p); err == nil {
				out = append(out, Named{Name: e.Name(), Path: p, Inode: ino})
			}
		}
	}
	return out
}

// AnyDir says whether any of dirs exists. Where none does, no namespace has a name: every
// namespace but the host's is shown as netns:<inode>.
func AnyDir(dirs ...string) bool {
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// Host returns the first of candidates (normally HostCandidates) whose inode can be read: the
// host namespace's path and inode.
func Host(candidates []string) (string, uint32, error) {
	var errs []error
	for _, p := range candidates {
		ino, err := Inode(p)
		if err == nil {
			return p, ino, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return "", 0, errors.New("host network namespace: no path to find it at")
	}
	return "", 0, fmt.Errorf("host network namespace: %w", errors.Join(errs...))
}

// Finder finds namespaces by inode: in named-namespace directories, in the processes under a
// host /proc, or as our own.
type Finder struct {
	proc string
	dirs []string

	mu sync.Mutex
	// paths remembers where each namespace was last found: scanning every process for every
	// reading would cost far more than the reading itself. A remembered path is checked again
	// on each use, since inode numbers are recycled and processes come and go.
	paths map[uint32]string
}

// NewFinder returns a Finder that looks for namespaces in dirs (DefaultDirs when none are
// given) and in the processes under hostProc: "/proc" normally, "/host/proc" from a debug pod
// that mounts the host's /proc there.
func NewFinder(hostProc string, dirs ...string) *Finder {
	if hostProc == "" {
		hostProc = "/proc"
	}
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	return &Finder{
		proc:  filepath.Clean(hostProc),
		dirs:  append([]string(nil), dirs...),
		paths: map[uint32]string{},
	}
}

// Open opens the namespace with inode ino, which the caller closes.
func (f *Finder) Open(ino uint32) (*File, error) {
	f.mu.Lock()
	cached, ok := f.paths[ino]
	f.mu.Unlock()
	if ok {
		if nf, err := open(cached, ino); err == nil {
			return nf, nil
		}
		f.mu.Lock()
		delete(f.paths, ino)
		f.mu.Unlock()
	}
	var errs []error
	for _, p := range f.candidates(ino) {
		nf, err := open(p, ino)
		if err != nil {
			// Gone or replaced between the scan and the open: keep looking.
			errs = append(errs, err)
			continue
		}
		f.mu.Lock()
		f.paths[ino] = p
		f.mu.Unlock()
		return nf, nil
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("netns %d: %w", ino, errors.Join(errs...))
	}
	where := append(append([]string(nil), f.dirs...), filepath.Join(f.proc, "*/ns/net"), "/proc/self/ns/net")
	return nil, fmt.Errorf("netns %d: not found in %s", ino, strings.Join(where, ", "))
}

// Do runs fn inside the namespace with inode ino (see File.Do).
func (f *Finder) Do(ino uint32, fn func() error) error {
	nf, err := f.Open(ino)
	if err != nil {
		return err
	}
	defer nf.Close()
	return nf.Do(fn)
}

// Path is a file that names the namespace with inode ino (a /run/netns entry, a process's
// ns/net), for tools that take a path.
func (f *Finder) Path(ino uint32) (string, error) {
	nf, err := f.Open(ino)
	if err != nil {
		return "", err
	}
	defer nf.Close()
	return nf.Path(), nil
}

// candidates lists paths whose inode is ino, best first: named namespaces (stable, and how a
// person would name them), then any process's namespace, then our own.
func (f *Finder) candidates(ino uint32) []string {
	var out []string
	for _, d := range f.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if isNetns(p, ino) {
				out = append(out, p)
			}
		}
	}
	entries, _ := os.ReadDir(f.proc)
	for _, e := range entries {
		if !isPID(e.Name()) {
			continue
		}
		p := filepath.Join(f.proc, e.Name(), "ns", "net")
		if isNetns(p, ino) {
			// One process is enough: every process in the namespace leads to the same place.
			out = append(out, p)
			break
		}
	}
	const self = "/proc/self/ns/net"
	if isNetns(self, ino) {
		out = append(out, self)
	}
	return out
}

func isPID(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
