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
