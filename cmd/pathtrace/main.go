// Command pathtrace follows one flow through a node's kernel and says where and why it died.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

func main() {
	// pathtrace shares the node it diagnoses: a soft memory limit makes the collector work
	// harder under an event flood instead of letting the heap double.
	debug.SetMemoryLimit(48 << 20)
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pathtrace: "+err.Error())
		os.Exit(1)
	}
}
