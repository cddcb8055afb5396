package text

import (
	"os"

	"golang.org/x/sys/unix"
)

// IsTerminal says whether f is a terminal (its termios can be read).
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
