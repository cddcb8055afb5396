// Command pathtrace follows one flow through a node's kernel and says where and why it died.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

func main() {
	// pathtrace shares the node it diagnoses: a soft memory limit makes the collector work
	// harder under an event flood instead of letting the heap double. Below the limit the
	// heap grows by half its live size between collections, not by all of it: a run holds
	// some 10-15 MB live while it allocates fast under a flood, and the ring buffer's mapping
	// and the binary already take half of the 64 MB pathtrace allows itself (make bench).
	debug.SetMemoryLimit(48 << 20)
	debug.SetGCPercent(50)
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pathtrace: "+err.Error())
		os.Exit(1)
	}
}
