//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package text

import "os"

// IsTerminal reports false where there is no termios: output is then never coloured.
func IsTerminal(f *os.File) bool { return false }
