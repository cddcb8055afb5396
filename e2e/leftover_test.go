package e2e

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// ourPrograms lists loaded BPF programs that are pathtrace's, by the kernel's own listing.
func ourPrograms() ([]string, error) {
	var names []string
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded in between
		}
		info, err := p.Info()
		p.Close()
		if err == nil && strings.HasPrefix(info.Name, "on_") {
			names = append(names, info.Name)
		}
	}
}

// requireNothingLeft checks that pathtrace's programs are gone after it exited; the kernel frees
// them shortly after the last reference goes, so allow it a moment.
func requireNothingLeft(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if left, err = ourPrograms(); err != nil {
			t.Fatalf("list BPF programs: %v", err)
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("BPF programs still loaded after pathtrace exited: %v", left)
}
