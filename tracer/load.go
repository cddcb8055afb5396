// Package tracer is pathtrace's kernel side in Go: it loads the BPF programs with the user's
// filter, attaches them to the tracepoints this kernel offers, reads the ring buffer and turns
// raw records into trace.Events.
package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
)

// hook is one tracepoint and the builds of its program (see hookBuilds).
type hook struct {
	tracepoint string // "skb:kfree_skb"
	name       string // tracepoint name without its system
	castProg   string
	btfProg    string
	rawProg    string
	required   bool // without it pathtrace cannot say what happened to a packet
}

var hooks = []hook{
	{"net:netif_receive_skb", "netif_receive_skb", bpf.PathtraceProgOnReceiveCast, bpf.PathtraceProgOnReceiveBtf, bpf.PathtraceProgOnReceiveRaw, true},
	{"net:net_dev_queue", "net_dev_queue", bpf.PathtraceProgOnQueueCast, bpf.PathtraceProgOnQueueBtf, bpf.PathtraceProgOnQueueRaw, false},
	{"net:net_dev_start_xmit", "net_dev_start_xmit", bpf.PathtraceProgOnXmitCast, bpf.PathtraceProgOnXmitBtf, bpf.PathtraceProgOnXmitRaw, false},
	{"fib:fib_table_lookup", "fib_table_lookup", bpf.PathtraceProgOnFibCast, bpf.PathtraceProgOnFibBtf, bpf.PathtraceProgOnFibRaw, false},
	{"skb:kfree_skb", "kfree_skb", bpf.PathtraceProgOnKfreeCast, bpf.PathtraceProgOnKfreeBtf, bpf.PathtraceProgOnKfreeRaw, true},
	{"skb:consume_skb", "consume_skb", bpf.PathtraceProgOnConsumeCast, bpf.PathtraceProgOnConsumeBtf, bpf.PathtraceProgOnConsumeRaw, false},
}

// ErrNoBTF means the kernel's BTF could not be read: pathtrace's programs are CO-RE and need it.
var ErrNoBTF = errors.New("kernel BTF not available")

func loadKernelBTF(path string) (*btf.Spec, error) {
	if path == "" {
		path = "/sys/kernel/btf/vmlinux"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w at %s (the kernel needs CONFIG_DEBUG_INFO_BTF=y): %w", ErrNoBTF, path, err)
	}
	defer f.Close()
	spec, err := btf.LoadSplitSpecFromReader(f, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: parse %s: %w", ErrNoBTF, path, err)
	}
	return spec, nil
}

// kernelConfig is the programs' configuration (CFG) for cfg.
func kernelConfig(cfg Config) bpf.PathtraceConfig {
	k := bpf.PathtraceConfig{Filter: kernelFilter(cfg.Filter)}
	if cfg.Snap {
		k.Snap = 1
	}
	if cfg.MaxRate > 0 {
		// A token comes back every interval, rounded up so that no more than MaxRate start in
		// a second; the bucket holds a second's worth, MaxRate tokens.
		rate := min(cfg.MaxRate, uint64(time.Second))
		k.BudgetIntervalNs = (uint64(time.Second) + rate - 1) / rate
		k.BudgetDepthNs = k.BudgetIntervalNs * rate
	}
	return k
}

// kernelFilter converts the user's filter into the kernel's representation: addresses and
// masks as 16 bytes (IPv4 in the first four), ports in network byte order.
func kernelFilter(f trace.Filter) bpf.PathtraceFilter {
	var k bpf.PathtraceFilter
	setPrefix(&k.Src, &k.SrcMask, f.Src)
	setPrefix(&k.Dst, &k.DstMask, f.Dst)
	switch {
	case f.IsV6():
		k.Family = 6
	case f.Src.IsValid() || f.Dst.IsValid():
		k.Family = 4
	}
	k.Proto = uint8(f.Proto)
	k.Sport = htons(f.Sport)
	k.Dport = htons(f.Dport)
	return k
}

func setPrefix(addr, mask *[16]uint8, p netip.Prefix) {
	if !p.IsValid() {
		return
	}
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= 8:
			mask[i] = 0xff
			bits -= 8
		case bits > 0:
			mask[i] = byte(0xff << (8 - bits))
			bits = 0
		}
		addr[i] = b[i] & mask[i]
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// loadedProbe is one attached hook.
type loadedProbe struct {
	prog *ebpf.Program
	link link.Link
}

func (p loadedProbe) Close() error {
	var err error
	if p.link != nil {
		err = p.link.Close()
	}
	if p.prog != nil {
		err = errors.Join(err, p.prog.Close())
	}
	return err
}

// hookBuild is one build of the hooks' programs. They differ in how they read kernel memory
// (see enum read_mode in bpf/include/parse.h), which decides what a packet of another flow costs.
type hookBuild struct {
	name string // in errors
	kind string // trace.Probe.Program: tp_btf or raw_tp
	prog func(hook) string
}

// hookBuilds are tried in this order; the first the kernel accepts is kept. Tests narrow it to
// run each build on a kernel that would take the first.
var hookBuilds = []hookBuild{
	// Packet bytes through bpf_rdonly_cast (6.2+): no helper call for a packet of another flow.
	{"tp_btf+bpf_rdonly_cast", "tp_btf", func(h hook) string { return h.castProg }},
	{"tp_btf", "tp_btf", func(h hook) string { return h.btfProg }},
	{"raw_tp", "raw_tp", func(h hook) string { return h.rawProg }},
}

// loadHook loads and attaches one hook, its cheapest build the kernel accepts.
func loadHook(spec *ebpf.CollectionSpec, h hook, maps map[string]*ebpf.Map, kernel *btf.Spec) (loadedProbe, trace.Probe, error) {
	pr := trace.Probe{Name: h.tracepoint}
	var errs []error
	for _, b := range hookBuilds {
		lp, err := loadVariant(spec, b.prog(h), maps, kernel, h.name)
		if err == nil {
			pr.Program = b.kind
			pr.Attached = true
			return lp, pr, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
	}
	err := errors.Join(errs...)
	pr.Error = err.Error()
	return loadedProbe{}, pr, fmt.Errorf("attach %s: %w", h.tracepoint, err)
}

func loadVariant(spec *ebpf.CollectionSpec, progName string, maps map[string]*ebpf.Map, kernel *btf.Spec, tp string) (loadedProbe, error) {
	prog, err := loadOne(spec, progName, maps, kernel)
	if err != nil {
		return loadedProbe{}, err
	}
	ps := spec.Programs[progName]
	var l link.Link
	switch ps.Type {
	case ebpf.Tracing:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	default:
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
	}
	if err != nil {
		prog.Close()
		return loadedProbe{}, fmt.Errorf("attach %s: %w", progName, err)
	}
	return loadedProbe{prog: prog, link: l}, nil
}

// loadOne loads one program of the object on its own, with the maps every program shares: a
// program this kernel refuses must not keep the others from loading.
func loadOne(spec *ebpf.CollectionSpec, name string, maps map[string]*ebpf.Map, kernel *btf.Spec) (*ebpf.Program, error) {
	one := spec.Copy()
	ps, ok := one.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s missing from the object", name)
	}
	one.Programs = map[string]*ebpf.ProgramSpec{name: ps}
	coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{
		MapReplacements: maps,
		Programs:        ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load %s: %+v", name, ve)
		}
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	return prog, nil
}
