package text

import (
	"os"
	"testing"
)

func TestIsTerminalOnAPseudoTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	if !IsTerminal(ptmx) {
		t.Fatal("a pseudo-terminal master is a terminal")
	}
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm-256color")
	if !AutoColor(ptmx) {
		t.Error("terminal, NO_COLOR empty: want colour")
	}
	t.Setenv("NO_COLOR", "1")
	if AutoColor(ptmx) {
		t.Error("NO_COLOR=1: want no colour")
	}
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "dumb")
	if AutoColor(ptmx) {
		t.Error("TERM=dumb: want no colour")
	}
}
