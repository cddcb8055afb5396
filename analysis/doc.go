// Package analysis holds pathtrace's kernel-free analysis: assemble turns kernel events into
// packets, diagnose turns packets and node facts into a verdict, merge joins several nodes'
// traces into one journey. Nothing under it touches the kernel, so all of it runs, and is
// tested, on recorded events alone (layering_test.go holds it to that).
package analysis
