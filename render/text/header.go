package text

import (
	"strconv"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// timeLayout keeps the UTC offset and not the zone name: a saved trace keeps only the
// offset, and `show` must print what the live run printed.
const timeLayout = "2006-01-02 15:04:05 -07:00"

// Header prints what is traced and how well this kernel can see it. It reads only what is
// known when tracing starts (never EndedAt, LostEvents, Flows or Verdict), because the live
// run prints it before the first packet.
func (p *Printer) Header(t *trace.Trace) {
	b := p.newBlock()
	var rows [][]cell
	var tails [][]span
	add := func(key string, keyStyle style, val ...span) {
		rows = append(rows, []cell{{s: key, st: keyStyle}})
		tails = append(tails, val)
	}

	add("tracing", plain, styled(bold, t.Filter.String()))
	for _, pod := range t.Meta.Pods {
		add(pod.Side, plain, sp(podLine(pod)))
	}
	var host []string
	if m := t.Meta; m.Hostname != "" {
		host = append(host, m.Hostname)
	}
	if t.Meta.Kernel != "" {
		host = append(host, "kernel "+t.Meta.Kernel)
	}
	if t.Meta.Backend != "" {
		host = append(host, "backend "+t.Meta.Backend)
	}
	if len(host) > 0 {
		add("host", plain, sp(strings.Join(host, ", ")))
	}
	for _, n := range t.Meta.Nodes {
		add("node", plain, sp(nodeLine(n, t.Meta.Nodes[0].Name)))
	}
	if pr := t.Meta.Probe; pr != nil {
		add("probe", warn, sp(probeLine(*pr)))
	}
	if !t.Meta.StartedAt.IsZero() {
		add("started", plain, sp(t.Meta.StartedAt.Format(timeLayout)))
	}

	var attached []string
	for _, pr := range t.Meta.Probes {
		if pr.Attached {
			attached = append(attached, pr.Name)
		}
	}
	switch {
	case len(t.Meta.Probes) == 0:
		// Nothing recorded (a hand-made or demo trace): claim nothing.
	case len(attached) == 0:
		add("probes", alarm, styled(alarm, "none attached: no packet can be seen"))
	default:
		add("probes", plain, sp(strconv.Itoa(len(attached))+" attached: "+strings.Join(attached, ", ")))
	}
	for _, pr := range t.Meta.Probes {
		if pr.Attached {
			continue
		}
		s := pr.Name
		if pr.Program != "" {
			s += " (" + pr.Program + ")"
		}
		if pr.Error != "" {
			s += ": " + pr.Error
		}
		add("failed", alarm, sp(s))
	}
	for _, d := range t.Meta.Degraded {
		add("degraded", warn, styled(warn, d))
	}

	b.table("", rows, tails)
	b.nl()
	p.flush(b)
}

// nodeLine describes one node of a merged trace: "node-b: kernel 6.18, started ...; 8 packets,
// 6 joined; clock +2.500s ±0.021ms vs node-a (both directions); from b.json".
func nodeLine(n trace.Node, reference string) string {
	var about []string
	if n.Hostname != "" && n.Hostname != n.Name {
		about = append(about, "host "+n.Hostname)
	}
	if n.Kernel != "" {
		about = append(about, "kernel "+n.Kernel)
	}
	if !n.StartedAt.IsZero() {
		about = append(about, "started "+n.StartedAt.Format(timeLayout))
	}
	s := n.Name + ": " + strings.Join(about, ", ")
	s += "; " + plural(n.Packets, "packet", "packets") + ", " + strconv.Itoa(n.Matched) + " joined"
	switch n.SkewBasis {
	case "reference":
		s += "; reference clock"
	case "none", "":
		s += "; clock unknown (no packet joined)"
	default:
		s += "; clock " + signedDuration(n.SkewNS)
		if n.SkewErrorNS > 0 {
			s += " ±" + signedDuration(n.SkewErrorNS)[1:]
		}
		s += " vs " + reference + " (" + n.SkewBasis + ")"
	}
	if n.Source != "" {
		s += "; from " + n.Source
	}
	return s
}

// signedDuration is "+2.500s" or "-0.021ms": a clock offset, read at a glance.
func signedDuration(ns int64) string {
	sign := "+"
	if ns < 0 {
		sign, ns = "-", -ns
	}
	if ns >= 1e9 {
		return sign + strconv.FormatFloat(float64(ns)/1e9, 'f', 3, 64) + "s"
	}
	return sign + strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) + "ms"
}

// podLine is how a pod named in --src/--dst was resolved: "pod default/web (10.244.1.5)", and
// which of its addresses the filter leaves out: "pod default/web (10.244.1.5; not traced:
// fd00::5)". The filter holds one address per side.
func podLine(p trace.PodInfo) string {
	s := "pod " + p.Key()
	var traced, other []string
	for _, a := range p.IPs {
		if a == p.Traced {
			traced = append(traced, a.String())
		} else {
			other = append(other, a.String())
		}
	}
	if len(traced) == 0 && p.Traced.IsValid() {
		traced = append(traced, p.Traced.String())
	}
	in := strings.Join(traced, ", ")
	if len(other) > 0 {
		in = strings.TrimPrefix(in+"; not traced: "+strings.Join(other, ", "), "; ")
	}
	if in != "" {
		s += " (" + in + ")"
	}
	return s
}

// probeLine says that pathtrace made the flow's traffic itself (--probe): "5 icmp echo-requests
// to 10.0.2.2, sent by pathtrace (--probe) from pod default/web". It says what was to be
// sent, which the live run knows before the first packet; the summary says how many were.
func probeLine(p trace.SentProbe) string {
	s := plural(p.Count, probeWhat(p.Kind, false), probeWhat(p.Kind, true)) + " to " + p.Dst.String()
	if p.Dport != 0 && p.Kind != "icmp" {
		s += " port " + strconv.Itoa(int(p.Dport))
	}
	if p.Name != "" {
		s += " asking for " + p.Name
	}
	s += ", sent by pathtrace (--probe)"
	if p.Node != "" {
		s += " on node " + p.Node
	}
	switch {
	case p.Pod != "":
		s += " from pod " + p.Pod
	case p.Netns != "":
		s += " from " + p.Netns
	}
	return s
}

func probeWhat(kind string, many bool) string {
	one := map[string]string{"icmp": "icmp echo-request", "tcp": "tcp SYN", "udp": "udp datagram", "dns": "dns query"}[kind]
	if one == "" {
		one = kind + " probe"
	}
	if many {
		if kind == "dns" {
			return "dns queries"
		}
		return one + "s"
	}
	return one
}
