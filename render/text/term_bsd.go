//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package text

import (
	"os"

	"golang.org/x/sys/unix"
)

// IsTerminal says whether f is a terminal (its termios can be read). It exists here so that
// `pathtrace show` can colour a trace copied to a laptop.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TIOCGETA)
	return err == nil
}
