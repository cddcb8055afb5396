// Package netns is pathtrace's one way to the node's network namespaces. It finds them (the
// named ones bind-mounted under /run/netns and /var/run/netns, any process's under a host
// /proc, our own), names them as a trace shows them ("host", the name under /run/netns, or
// "netns:<inode>"), enters one to read or open sockets there, and reads a namespace's inode:
// the number the BPF programs report (net->ns.inum) and by which everything else knows it.
package netns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultDirs are where iproute2 and most CNI runtimes bind-mount named namespaces.
var DefaultDirs = []string{"/run/netns", "/var/run/netns"}

// HostCandidates are where the host namespace is looked for, best first. PID 1's is the host's
// even when pathtrace runs in a pod; some sandboxes deny reading it, and then our own
// namespace is the best remaining guess (pathtrace runs with the host network).
var HostCandidates = []string{"/proc/1/ns/net", "/proc/self/ns/net"}

// Inode returns the inode of the file at path, following links: for /proc/self/ns/net or a
// /run/netns entry, the namespace's. Any file has one: callers that go on to enter or open
// the namespace use Open, which checks that path is one.
func Inode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return uint32(st.Ino), nil
}

// isNetns reports whether path leads to a namespace with inode ino. The file system is
// checked too: a placeholder left in /run/netns by a crashed `ip netns add` is an ordinary
// tmpfs file, whose inode number may happen to be ino.
func isNetns(path string, ino uint32) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Ino != uint64(ino) {
		return false
	}
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && fs.Type == unix.NSFS_MAGIC
}

// File is an open network namespace. Holding it keeps the namespace alive.
type File struct {
	fd    int
	inode uint32
	path  string
}

// Open opens the namespace file at path (a /run/netns entry, a process's ns/net) and refuses a
// file that is not one: from a debug pod without mount propagation, a namespace bind-mounted
// on the node after the pod started shows as the empty file under it.
func Open(path string) (*File, error) { return open(path, 0) }

// open is Open that also checks the namespace is ino (0: any): between finding a path and
// opening it the process may have exited and its PID been reused.
func open(path string, ino uint32) (*File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := errors.Join(unix.Fstat(fd, &st), unix.Fstatfs(fd, &fs)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	switch {
	case fs.Type != unix.NSFS_MAGIC:
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a namespace file (not on nsfs)", path)
	case ino != 0 && st.Ino != uint64(ino):
		unix.Close(fd)
		return nil, fmt.Errorf("%s is no longer netns %d", path, ino)
	}
	return &File{fd: fd, inode: uint32(st.Ino), path: path}, nil
}

// Fd is the open descriptor, for netlink handles made at the namespace (NewHandleAt,
// GetNetNsIdByFd). It stays the File's: do not close it.
func (f *File) Fd() int { return f.fd }

// Inode is the namespace's inode.
func (f *File) Inode() uint32 { return f.inode }

// Path is the file the namespace was opened at.
func (f *File) Path() string { return f.path }

// Close closes the descriptor. Safe to call more than once.
func (f *File) Close() error {
	if f == nil || f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}
