package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/bpf"
	"github.com/pathtrace/pathtrace/trace"
)

// Backends say how function-level hops are captured.
const (
	BackendAuto       = "auto"
	BackendFentry     = "fentry"
	BackendKprobe     = "kprobe"
	BackendTracepoint = "tracepoint"
)

// funcHook is one kernel function and its programs for each backend.
type funcHook struct {
	fn        string
	fentry    string // fentry program
	fexit     string // for the return value, with fentry
	kprobe    string
	kretprobe string // for the return value, with kprobes
}

var funcHooks = []funcHook{
	{"ip_forward", bpf.PathtraceProgFeIpForward, "", bpf.PathtraceProgKpIpForward, ""},
	{"ip_local_deliver", bpf.PathtraceProgFeIpLocalDeliver, "", bpf.PathtraceProgKpIpLocalDeliver, ""},
	{"ip_output", bpf.PathtraceProgFeIpOutput, "", bpf.PathtraceProgKpIpOutput, ""},
	{"ip_finish_output2", bpf.PathtraceProgFeIpFinishOutput2, "", bpf.PathtraceProgKpIpFinishOutput2, ""},
	{"nf_hook_slow", bpf.PathtraceProgFeNfHookSlow, bpf.PathtraceProgFxNfHookSlow, bpf.PathtraceProgKpNfHookSlow, bpf.PathtraceProgKrNfHookSlow},
	{"br_forward", bpf.PathtraceProgFeBrForward, "", bpf.PathtraceProgKpBrForward, ""},
	{"ip6_forward", bpf.PathtraceProgFeIp6Forward, "", bpf.PathtraceProgKpIp6Forward, ""},
	{"ip6_output", bpf.PathtraceProgFeIp6Output, "", bpf.PathtraceProgKpIp6Output, ""},
}

// reasonOf says in a few words why the kernel refused a backend.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, unix.EPERM):
		return "refused by the kernel (EPERM)"
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EOPNOTSUPP):
		return "not supported"
	case strings.Contains(err.Error(), "no kprobe PMU"):
		return "no kprobe support"
	}
	return err.Error()
}

// errBackend means the kernel refuses the backend as a whole (not one function).
var errBackend = errors.New("backend unavailable")

// attachFuncs attaches the function hops with the requested backend ("auto" tries fentry, then
// kprobes) and says which backend it used. A function this kernel lacks (inlined, renamed) is
// skipped and reported; a backend the kernel refuses as a whole is an error only when forced.
func (t *Tracer) attachFuncs(spec *ebpf.CollectionSpec, kernel *btf.Spec, want string) (string, error) {
	order := []string{BackendFentry, BackendKprobe}
	switch want {
	case BackendAuto, "":
	case BackendFentry, BackendKprobe:
		order = []string{want}
	case BackendTracepoint:
		t.degraded = append(t.degraded, "--backend tracepoint: function-level hops (ip_forward, netfilter verdicts...) are not traced")
		return BackendTracepoint, nil
	default:
		return "", fmt.Errorf("unknown backend %q (want auto, fentry, kprobe or tracepoint)", want)
	}
	var refused []string
	for _, backend := range order {
		probes, info, err := t.attachBackend(spec, kernel, backend)
		if err == nil {
			t.probes = append(t.probes, probes...)
			t.info = append(t.info, info...)
			return backend, nil
		}
		if want == backend {
			return "", fmt.Errorf("--backend %s is unavailable on this kernel: %s", backend, reasonOf(err))
		}
		refused = append(refused, backend+": "+reasonOf(err))
	}
	t.degraded = append(t.degraded, "kprobes and fentry unavailable on this kernel ("+strings.Join(refused, "; ")+
		"): showing tracepoint hops only, without ip_forward, netfilter verdicts or local delivery")
	return BackendTracepoint, nil
}

// attachBackend attaches every function hook with one backend. The first hook decides whether
// the backend works at all: if the kernel refuses it, nothing stays attached.
func (t *Tracer) attachBackend(spec *ebpf.CollectionSpec, kernel *btf.Spec, backend string) ([]loadedProbe, []trace.Probe, error) {
	if backend == BackendKprobe {
		// Without the kprobe PMU, cilium/ebpf would fall back to tracefs kprobe_events, which
		// outlive a killed process: not on a node we are asked to leave as we found it.
		if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
			return nil, nil, fmt.Errorf("%w: no kprobe PMU (/sys/bus/event_source/devices/kprobe)", errBackend)
		}
	}
	var probes []loadedProbe
	var info []trace.Probe
	working := false
	for _, h := range funcHooks {
		lps, err := t.attachFunc(spec, kernel, backend, h)
		pr := trace.Probe{Name: h.fn, Program: backend, Attached: err == nil}
		if err != nil {
			if !working && !missingFunction(err) {
				for _, p := range probes {
					p.Close()
				}
				return nil, nil, fmt.Errorf("%w: %s: %w", errBackend, h.fn, err)
			}
			pr.Error = err.Error()
		} else {
			working = true
			probes = append(probes, lps...)
		}
		info = append(info, pr)
	}
	if !working {
		return nil, nil, fmt.Errorf("%w: no function could be attached", errBackend)
	}
	return probes, info, nil
}

// missingFunction says the function is not in this kernel, as opposed to the backend failing.
func missingFunction(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, btf.ErrNotFound)
}

func (t *Tracer) attachFunc(spec *ebpf.CollectionSpec, kernel *btf.Spec, backend string, h funcHook) ([]loadedProbe, error) {
	switch backend {
	case BackendFentry:
		var out []loadedProbe
		for _, name := range []string{h.fentry, h.fexit} {
			if name == "" {
				continue
			}
			prog, err := t.loadProgram(spec, name, kernel)
			if err == nil {
				var l link.Link
				if l, err = link.AttachTracing(link.TracingOptions{Program: prog}); err == nil {
					out = append(out, loadedProbe{prog: prog, link: l})
					continue
				}
				prog.Close()
				err = fmt.Errorf("attach %s: %w", name, err)
			}
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		return out, nil
	case BackendKprobe:
		var out []loadedProbe
		for _, p := range []struct {
			name string
			ret  bool
		}{{h.kprobe, false}, {h.kretprobe, true}} {
			if p.name == "" {
				continue
			}
			prog, err := t.loadProgram(spec, p.name, kernel)
			if err == nil {
				var l link.Link
				if p.ret {
					l, err = link.Kretprobe(h.fn, prog, nil)
				} else {
					l, err = link.Kprobe(h.fn, prog, nil)
				}
				if err == nil {
					out = append(out, loadedProbe{prog: prog, link: l})
					continue
				}
				prog.Close()
			}
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("%s %s: %w", backend, h.fn, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown backend %q", backend)
}

// loadProgram loads one program of the object with the shared maps.
func (t *Tracer) loadProgram(spec *ebpf.CollectionSpec, name string, kernel *btf.Spec) (*ebpf.Program, error) {
	return loadOne(spec, name, t.maps, kernel)
}

var funcNames = map[bpf.PathtraceFuncId]string{
	bpf.PathtraceFuncIdFN_IP_FORWARD:        "ip_forward",
	bpf.PathtraceFuncIdFN_IP_LOCAL_DELIVER:  "ip_local_deliver",
	bpf.PathtraceFuncIdFN_IP_OUTPUT:         "ip_output",
	bpf.PathtraceFuncIdFN_IP_FINISH_OUTPUT2: "ip_finish_output2",
	bpf.PathtraceFuncIdFN_NF_HOOK_SLOW:      "nf_hook_slow",
	bpf.PathtraceFuncIdFN_BR_FORWARD:        "br_forward",
	bpf.PathtraceFuncIdFN_IP6FORWARD:        "ip6_forward",
	bpf.PathtraceFuncIdFN_IP6OUTPUT:         "ip6_output",
}

// Netfilter's hook numbers (enum nf_inet_hooks) and families (NFPROTO_*): UAPI, stable.
var (
	nfHooks    = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "INGRESS"}
	nfFamilies = map[uint8]string{1: "inet", 2: "ipv4", 3: "arp", 5: "netdev", 7: "bridge", 10: "ipv6"}
)

// funcCall describes a function hop and names the probe that saw it.
func (t *Tracer) funcCall(c *bpf.PathtraceFuncCall) (*trace.Func, string, bool) {
	f := &trace.Func{Name: funcNames[c.Id]}
	if f.Name == "" {
		return nil, "", false
	}
	probe := t.backend + ":" + f.Name
	if c.HasRet != 0 {
		ret := c.Ret
		f.Ret = &ret
		probe = map[string]string{BackendFentry: "fexit", BackendKprobe: "kretprobe"}[t.backend] + ":" + f.Name
	}
	if c.Id == bpf.PathtraceFuncIdFN_NF_HOOK_SLOW {
		if int(c.NfHook) < len(nfHooks) {
			f.Hook = nfHooks[c.NfHook]
		}
		f.Family = nfFamilies[c.NfPf]
		if f.Ret != nil {
			// nf_hook_slow: 1 when the packet may go on, -EPERM when a rule dropped it, 0 when a
			// rule stole or queued it.
			switch r := *f.Ret; {
			case r == 1:
				f.Verdict = "ACCEPT"
			case r < 0:
				f.Verdict = "DROP"
			default:
				f.Verdict = "STOLEN"
			}
		}
	}
	return f, probe, true
}
