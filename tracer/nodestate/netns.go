package nodestate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread inside the network namespace with inode ino and moves the
// thread back afterwards. fn runs on a goroutine of its own so that a thread that cannot be
// moved back is never handed to the caller: that goroutine then exits still locked, and the
// Go runtime destroys the thread instead of reusing it. Goroutines started by fn run
// elsewhere, in whatever namespace their thread is in.
func (r *Reader) Do(ino uint32, fn func() error) error {
	fd, err := r.open(ino)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// thread-self, not self: only this thread's namespace is about to change, and self
		// names the main thread's.
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %d: open current netns: %w", ino, err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %d: setns: %w", ino, err)
			return
		}
		ferr := runRecovered(fn)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %d (thread discarded): %w", ino, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// runRecovered turns a panic in fn into an error, so that the thread still goes back to its
// own namespace and the program survives a bad reading.
func runRecovered(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in namespace: %v", p)
		}
	}()
	return fn()
}

// open returns a descriptor of the namespace with inode ino, which the caller closes.
func (r *Reader) open(ino uint32) (int, error) {
	r.mu.Lock()
	cached, ok := r.paths[ino]
	r.mu.Unlock()
	if ok {
		if fd, err := openChecked(cached, ino); err == nil {
			return fd, nil
		}
		r.mu.Lock()
		delete(r.paths, ino)
		r.mu.Unlock()
	}
	var errs []error
	for _, p := range r.candidates(ino) {
		fd, err := openChecked(p, ino)
		if err != nil {
			// Gone or replaced between the scan and the open: keep looking.
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		r.paths[ino] = p
		r.mu.Unlock()
		return fd, nil
	}
	if len(errs) > 0 {
		return -1, fmt.Errorf("netns %d: %w", ino, errors.Join(errs...))
	}
	where := append(append([]string(nil), r.dirs...), filepath.Join(r.proc, "*/ns/net"), "/proc/self/ns/net")
	return -1, fmt.Errorf("netns %d: not found in %s", ino, strings.Join(where, ", "))
}

// candidates lists paths whose inode is ino, best first: named namespaces (stable, and how a
// person would name them), then any process's namespace, then our own.
func (r *Reader) candidates(ino uint32) []string {
	var out []string
	for _, d := range r.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if isNetnsInode(p, ino) {
				out = append(out, p)
			}
		}
	}
	entries, _ := os.ReadDir(r.proc)
	for _, e := range entries {
		if !isPID(e.Name()) {
			continue
		}
		p := filepath.Join(r.proc, e.Name(), "ns", "net")
		if isNetnsInode(p, ino) {
			// One process is enough: every process in the namespace leads to the same place.
			out = append(out, p)
			break
		}
	}
	const self = "/proc/self/ns/net"
	if isNetnsInode(self, ino) {
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

// isNetnsInode reports whether path leads to a namespace with inode ino. The file system is
// checked too: a placeholder left in /run/netns by a crashed `ip netns add` is an ordinary
// tmpfs file, whose inode number may happen to be ino.
func isNetnsInode(path string, ino uint32) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Ino != uint64(ino) {
		return false
	}
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Type == unix.NSFS_MAGIC
}

// openChecked opens path and checks that what was opened is still namespace ino: between
// finding a path and opening it the process may have exited and its PID been reused.
func openChecked(path string, ino uint32) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := errors.Join(unix.Fstat(fd, &st), unix.Fstatfs(fd, &fs)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Ino != uint64(ino) || fs.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is no longer netns %d", path, ino)
	}
	return fd, nil
}

// Path is a file that names the namespace with inode ino (a /run/netns entry, a process's
// ns/net), for tools that take a path.
func (r *Reader) Path(ino uint32) (string, error) {
	fd, err := r.open(ino)
	if err != nil {
		return "", err
	}
	unix.Close(fd)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paths[ino], nil
}
