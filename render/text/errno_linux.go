package text

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// errnoName is the Linux name of errno n ("EHOSTUNREACH"), or "" if it has none.
func errnoName(n int32) string { return unix.ErrnoName(syscall.Errno(n)) }
