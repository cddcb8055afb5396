// Package vmspec is what the vmtest runner (host) and the vmtest init (PID 1 in the VM) agree
// on: where things are in the initramfs, the manifest of test binaries, and the markers init
// prints on the serial console. It imports only the standard library: the init must stay tiny
// and must not pull in anything that touches the kernel before it has mounted /proc and /sys.
package vmspec

import (
	"fmt"
	"strconv"
	"strings"
)

// Paths inside the initramfs.
const (
	ManifestPath = "/vmtest/manifest.json"
	ModulesDir   = "/lib/modules/vmtest" // decompressed .ko files, flat: <name>.ko
	LoadList     = ModulesDir + "/load.list"
	DepFile      = ModulesDir + "/modules.dep"   // "name: dep1 dep2" (deps in load order)
	AliasFile    = ModulesDir + "/modules.alias" // "pattern name", for the modprobe helper
	ModprobeLog  = "/run/vmtest-modprobe.log"
)

// Manifest is /vmtest/manifest.json: what init runs, in order.
type Manifest struct {
	Tests []Test `json:"tests"`
	// Modules are loaded (with their dependencies, from DepFile) before any test runs.
	Modules []string `json:"modules"`
	// TimeoutSec bounds each test binary; init sends SIGQUIT then SIGKILL after it.
	TimeoutSec int `json:"timeout_sec"`
	// MemlockUnlimited raises RLIMIT_MEMLOCK for the tests. Off, they get the kernel's
	// default, as under systemd before v253: 64 KiB before 5.16, 8 MiB since.
	MemlockUnlimited bool `json:"memlock_unlimited"`
}

// Test is one test binary run by init.
type Test struct {
	Name string   `json:"name"` // package path, for the report
	Path string   `json:"path"` // absolute path in the initramfs
	Dir  string   `json:"dir"`  // working directory
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

// Marker starts every line init prints for the runner; nothing a test prints starts so.
const Marker = "@@vmtest@@"

// Marker lines, each followed by key=value fields.
const (
	EvInit   = "init"     // init started: kernel=<uname -r>
	EvModule = "module"   // name=<m> result=ok|exists|error err=<...>
	EvBegin  = "begin"    // name=<test>
	EvEnd    = "end"      // name=<test> exit=<code> seconds=<s>
	EvDone   = "done"     // status=<0 if every test binary exited 0>
	EvNote   = "note"     // msg=<...>, for things the report should show
	EvProbe  = "modprobe" // request=<name the kernel asked for> result=<...>
)

// Line formats one marker line. Values must not contain spaces; use Quote for free text.
func Line(ev string, kv ...string) string {
	var b strings.Builder
	b.WriteString(Marker + " " + ev)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %s=%s", kv[i], kv[i+1])
	}
	return b.String()
}

// Quote makes free text one marker field.
func Quote(s string) string { return strconv.Quote(s) }

// Event is a parsed marker line.
type Event struct {
	Kind   string
	Fields map[string]string
}

// Parse returns the marker event in line, if line is one. A kernel message may have been
// written in front of it on the same serial line, so the marker is looked for anywhere.
func Parse(line string) (Event, bool) {
	i := strings.Index(line, Marker+" ")
	if i < 0 {
		return Event{}, false
	}
	rest := line[i+len(Marker)+1:]
	kind, rest, _ := strings.Cut(rest, " ")
	ev := Event{Kind: kind, Fields: map[string]string{}}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				val, rest = after, ""
			} else {
				val, _ = strconv.Unquote(q)
				rest = after[len(q):]
			}
		} else {
			val, rest, _ = strings.Cut(after, " ")
		}
		ev.Fields[key] = val
	}
	return ev, true
}
