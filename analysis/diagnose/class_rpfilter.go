package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/pathtrace/pathtrace/trace"
)

var rpFilterClass = register(Class{
	Name:       "rp-filter",
	Order:      20,
	Recognises: "`IP_RPFILTER`",
	Reads:      "`rp_filter` of `all` and the device (the kernel uses the larger: IN_DEV_MAXCONF), the route back to the source (the trace's own lookup, else `ip route get` read live)",
	Fix:        "loose mode (`rp_filter=2`) on whichever of `all`/device is strict, in that namespace, or the route back",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "IP_RPFILTER" },
	Explain:    (*Diagnoser).rpFilter,
})

// routeBackFacts reads the route a namespace would use to answer an address (an optional
// Facts extension).
type routeBackFacts interface {
	RouteBack(netns uint32, addr netip.Addr) (string, error)
}

var rpModes = map[int]string{0: "off", 1: "strict", 2: "loose"}

// rpFilter explains a reverse-path filter drop: the effective value is the larger of all's and
// the device's (IN_DEV_RPFILTER is IN_DEV_MAXCONF); the route back is the lookup the kernel
// made for the source, when the trace saw it.
func (d *Diagnoser) rpFilter(f *finding) {
	dev := f.site.Ifname
	src := f.headers().Src
	f.cause = "reverse-path filter on " + dev
	back := f.routeBack(src)
	if back != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "route back to " + src.String(), Value: back, Source: "fib:fib_table_lookup (the kernel's own reverse-path lookup)"})
	} else if rb, ok := d.facts.(routeBackFacts); ok {
		if r, err := rb.RouteBack(f.site.Netns, src); err == nil {
			back = "`" + r + "`"
			f.evidence = append(f.evidence, trace.Evidence{What: "route back to " + src.String(), Value: r, Source: "netlink (ip route get " + src.String() + ") in netns " + f.site.NetnsName})
		} else {
			f.evidence = append(f.evidence, trace.Evidence{What: "route back to " + src.String(), Value: err.Error(), Source: "netlink (ip route get)"})
		}
	}
	routeFix := inNetns(f.site.NetnsName, "ip route get "+src.String()+"   # the route back must go out "+dev+" for strict mode")
	if d.facts == nil {
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf.all.rp_filter=2; sysctl -w net.ipv4.conf."+dev+".rp_filter=2   # loose mode: the effective value is max(all, device)"), routeFix}
		return
	}
	allKey, devKey := "net.ipv4.conf.all.rp_filter", "net.ipv4.conf."+dev+".rp_filter"
	vals := map[string]int{}
	var errs []error
	for _, k := range []string{allKey, devKey} {
		v, err := d.facts.Sysctl(f.site.Netns, k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.evidence = append(f.evidence, trace.Evidence{What: k, Value: v, Source: f.sysctlSource(k)})
		if n, err := strconv.Atoi(v); err == nil {
			vals[k] = n
		}
	}
	if len(vals) < 2 {
		f.evidence = append(f.evidence, trace.Evidence{What: "rp_filter", Value: errorsText(errs...), Source: "read failed"})
		f.fix = []string{inNetns(f.site.NetnsName, "sysctl "+allKey+" "+devKey+"   # the effective value is the larger"), routeFix}
		return
	}
	eff := max(vals[allKey], vals[devKey])
	f.evidence = append(f.evidence, trace.Evidence{What: "effective rp_filter on " + dev, Value: fmt.Sprintf("%d (%s)", eff, rpModes[eff]), Source: "max(all, device): the kernel's IN_DEV_MAXCONF"})
	if eff == 0 {
		// Turned off since the drop: say what was seen, not a cause the node no longer shows.
		f.meaning += fmt.Sprintf(". rp_filter is off on %s now (changed since the drop?)", dev)
		f.fix = []string{routeFix}
		return
	}
	f.sure = true
	from := "the device's own setting"
	if vals[allKey] >= vals[devKey] {
		from = "net.ipv4.conf.all.rp_filter, which overrides a lower device value"
	}
	f.cause = fmt.Sprintf("reverse-path filter (%s) on %s", rpModes[eff], dev)
	f.meaning = fmt.Sprintf("the reverse-path filter is %s on %s (rp_filter=%d from %s): ", rpModes[eff], dev, eff, from)
	switch {
	case eff != 1:
		f.meaning += "loose mode drops a packet only when there is no route back to its source " + src.String() + " at all"
	case back != "":
		f.meaning += "the route back to " + src.String() + " is " + back + ", not " + dev + ", so packets from it arriving on " + dev + " are dropped (asymmetric routing)"
	default:
		f.meaning += "the route back to " + src.String() + " does not go out " + dev + " (the trace did not see that lookup: `ip route get " + src.String() + "` shows it), so packets from it arriving on " + dev + " are dropped (asymmetric routing)"
	}
	var fix []string
	for _, k := range []string{allKey, devKey} {
		if vals[k] == 1 {
			fix = append(fix, inNetns(f.site.NetnsName, "sysctl -w "+k+"=2   # loose mode (the effective value is max(all, device), so each strict one must go)"))
		}
	}
	f.fix = append(fix, routeFix+"   # or make the route back symmetric", "persist it in /etc/sysctl.d/")
}

// routeBack is the route lookup the trace saw, in the drop's namespace, for dst (the reverse
// path's destination), in words; "" when none was seen.
func (f *finding) routeBack(dst netip.Addr) string {
	for _, h := range f.example.Hops {
		r := h.Route
		if r == nil || h.Netns != f.site.Netns || r.Lookup.Dst != dst {
			continue
		}
		if r.Err != 0 {
			return fmt.Sprintf("none (table %s: error %d)", orDefault(r.TableName, fmt.Sprint(r.Table)), r.Err)
		}
		v := "out " + r.OutIfname
		if r.Gateway.IsValid() {
			v += " via " + r.Gateway.String()
		}
		return v + " (table " + orDefault(r.TableName, fmt.Sprint(r.Table)) + ")"
	}
	return ""
}
