package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// inNetns is cmd as typed where it must run: on the host as is, elsewhere inside the namespace.
func inNetns(netnsName, cmd string) string {
	switch {
	case netnsName == "host" || netnsName == "":
		return cmd
	case strings.HasPrefix(netnsName, "netns:"):
		return fmt.Sprintf("in %s (nsenter --net=/proc/<pid>/ns/net of a process there): %s", netnsName, cmd)
	}
	return "ip netns exec " + netnsName + " " + cmd
}

func (f *finding) sysctlSource(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/") + " in netns " + f.site.NetnsName
}

// dropHop is the hop where the example packet died.
func (f *finding) dropHop() trace.Hop {
	hs := f.example.Hops
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Event == trace.KindDrop && !hs[i].Copy {
			return hs[i]
		}
	}
	return trace.Hop{}
}

// headers are the example packet's headers where it died.
func (f *finding) headers() trace.Headers {
	if h := f.dropHop(); h.Tuple != nil {
		return *h.Tuple
	}
	return f.example.Tuple
}

// routeEvidence reports the route lookups the packet went through in the drop's namespace.
func (f *finding) routeEvidence() []trace.Evidence {
	var ev []trace.Evidence
	for _, h := range f.example.Hops {
		if h.Route == nil || h.Netns != f.site.Netns {
			continue
		}
		r := h.Route
		v := fmt.Sprintf("table %s: ", orDefault(r.TableName, fmt.Sprint(r.Table)))
		if r.Err != 0 {
			v += lookupErrText(r.Err)
		} else {
			v += "-> " + r.OutIfname
			if r.Gateway.IsValid() {
				v += " via " + r.Gateway.String()
			}
		}
		ev = append(ev, trace.Evidence{What: "route lookup " + r.Lookup.Src.String() + " > " + r.Lookup.Dst.String(), Value: v, Source: "fib:fib_table_lookup"})
	}
	return ev
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func errorsText(errs ...error) string {
	var s []string
	for _, e := range errs {
		if e != nil {
			s = append(s, e.Error())
		}
	}
	return strings.Join(s, "; ")
}

func addrOf(h *trace.Headers) string {
	if h == nil {
		return ""
	}
	return h.Src.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// notKnown records what the finding could not observe and the command that would settle it:
// the verdict says it rather than guess.
func (f *finding) notKnown(what, settle string) {
	f.unknown = append(f.unknown, trace.NotKnown{What: what, Settle: settle})
}
