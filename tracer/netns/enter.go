package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread inside the namespace and moves the thread back afterwards.
// fn runs on a goroutine of its own so that a thread that cannot be moved back is never handed
// to the caller: that goroutine then exits still locked, and the Go runtime destroys the
// thread instead of reusing it. Sockets fn opens stay in the namespace after Do returns;
// goroutines started by fn run elsewhere, in whatever namespace their thread is in.
func (f *File) Do(fn func() error) error {
	if f == nil || f.fd < 0 {
		return errors.New("enter netns: namespace file is closed")
	}
	ino := f.inode
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
		if err := unix.Setns(f.fd, unix.CLONE_NEWNET); err != nil {
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

// DoAt runs fn inside the namespace at path (see File.Do).
func DoAt(path string, fn func() error) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Do(fn)
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
