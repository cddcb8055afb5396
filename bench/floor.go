package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// floorHooks are the tracepoints pathtrace attaches to (tracer/load.go's hooks).
var floorHooks = []string{"netif_receive_skb", "net_dev_queue", "net_dev_start_xmit", "fib_table_lookup", "kfree_skb", "consume_skb"}

// emptyPrograms attaches a program that only returns 0 to each of pathtrace's tracepoints, the
// way pathtrace attaches its own (tp_btf, raw_tp where the kernel refuses it): the cost of
// having any BPF program there at all, the floor under the filtered-out config. Close detaches.
type emptyPrograms struct {
	progs []*ebpf.Program
	hooks []string // the tracepoint of each of progs
	links []link.Link
}

func attachEmpty() (*emptyPrograms, error) {
	e := &emptyPrograms{}
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	for _, tp := range floorHooks {
		if err := e.attach(tp, insns); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

func (e *emptyPrograms) attach(tp string, insns asm.Instructions) error {
	var errs []error
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_empty", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: tp, Instructions: insns, License: "GPL"})
	if err == nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err == nil {
			e.progs, e.hooks, e.links = append(e.progs, prog), append(e.hooks, tp), append(e.links, l)
			return nil
		}
		prog.Close()
		errs = append(errs, fmt.Errorf("tp_btf: %w", err))
	} else {
		errs = append(errs, fmt.Errorf("tp_btf: %w", err))
	}
	prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_empty", Type: ebpf.RawTracepoint, Instructions: insns, License: "GPL"})
	if err != nil {
		return fmt.Errorf("empty program on %s: %w", tp, errors.Join(append(errs, fmt.Errorf("raw_tp: %w", err))...))
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
	if err != nil {
		prog.Close()
		return fmt.Errorf("empty program on %s: %w", tp, errors.Join(append(errs, fmt.Errorf("raw_tp: %w", err))...))
	}
	e.progs, e.hooks, e.links = append(e.progs, prog), append(e.hooks, tp), append(e.links, l)
	return nil
}

func (e *emptyPrograms) Close() {
	for _, l := range e.links {
		l.Close()
	}
	for _, p := range e.progs {
		p.Close()
	}
}
