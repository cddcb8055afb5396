// Command pathtrace follows one flow through a node's kernel and says where and why it died.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pathtrace: "+err.Error())
		os.Exit(1)
	}
}
