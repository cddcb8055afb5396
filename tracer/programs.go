package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
)

// ownProgramPrefixes begin the names of pathtrace's BPF programs: tracepoint hooks (on_),
// fentry and fexit (fe_, fx_), kprobes and kretprobes (kp_, kr_).
var ownProgramPrefixes = []string{"on_", "fe_", "fx_", "kp_", "kr_"}

// IsOwnProgram says whether a loaded BPF program's name is one of pathtrace's. The kernel
// lists programs by name only: this is how a check for leftovers tells pathtrace's from
// another tool's.
func IsOwnProgram(name string) bool {
	for _, p := range ownProgramPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// LoadedPrograms lists the BPF programs loaded in the kernel, by any process, whose names are
// pathtrace's (IsOwnProgram), by ID.
func LoadedPrograms() (map[ebpf.ProgramID]string, error) {
	progs := map[ebpf.ProgramID]string{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return progs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list BPF programs after %d: %w", id, err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded in between
		}
		info, err := p.Info()
		p.Close()
		if err == nil && IsOwnProgram(info.Name) {
			progs[id] = info.Name
		}
	}
}
