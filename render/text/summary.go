package text

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pathtrace/pathtrace/trace"
)

// Summary prints how the run went, one line per flow, a loud warning if events were lost,
// and the verdict.
func (p *Printer) Summary(t *trace.Trace) { p.SummaryOf(t, len(t.Packets)) }

// SummaryOf is Summary for a trace whose kept packets are not in t.Packets: a live run writes
// them to its trace file as they complete rather than holding them, and says how many it kept.
func (p *Printer) SummaryOf(t *trace.Trace, kept int) {
	b := p.newBlock()
	ran := ""
	if d := runTime(t.Meta); d != "" {
		ran = " in " + d
	}
	if stop := stopReason(t.Meta.EndReason); stop != "" {
		ran += " (stopped: " + stop + ")"
	}
	if kept == 0 {
		b.line("", styled(warn, "no packets matched "+t.Filter.String()+ran))
	} else {
		b.line("", sp("summary: "+plural(kept, "packet", "packets")+ran))
	}
	for _, f := range t.Flows {
		b.line("", flowLine(f)...)
	}
	if pr := t.Meta.Probe; pr != nil {
		s := fmt.Sprintf("probe: %d of %d sent by pathtrace (--probe)", pr.Sent, pr.Count)
		if pr.Error != "" {
			b.line("", styled(warn, s+": "+pr.Error))
		} else {
			b.line("", sp(s))
		}
	}
	if n := t.Meta.LostEvents; n > 0 {
		lost := plural(int(n), "event", "events") + " lost"
		if t.Meta.Events > 0 {
			// Older traces do not say how many arrived.
			lost = fmt.Sprintf("%d of %d events lost", n, n+t.Meta.Events)
		}
		b.line("", styled(alarm, "WARNING: "+lost),
			sp(" (the kernel's ring buffer was full): this trace is incomplete."))
		b.line("         ", sp("Hops or whole packets may be missing; a packet marked unknown may have been dropped or delivered."))
	}
	if n := t.Meta.Skipped; n > 0 {
		received := ""
		if t.Meta.Events > 0 {
			received = fmt.Sprintf("; %s received", plural(int(t.Meta.Events), "event", "events"))
		}
		b.line("", styled(warn, "overload: "+plural(int(n), "matching packet", "matching packets")+" not followed"),
			sp(fmt.Sprintf(" (the ring buffer was filling up; %d route lookups not reported either%s): the packets shown are whole.", t.Meta.RoutesSkipped, received)))
	}
	if n := t.Meta.OverBudget; n > 0 {
		b.line("", styled(warn, "budget: "+plural(int(n), "matching packet", "matching packets")+" not traced"),
			sp(" ("+overBudget(t.Meta.MaxRate)+"): the packets shown are a sample, each whole."))
	}
	if n := t.Meta.NotKept; n > 0 {
		b.line("", sp(fmt.Sprintf("%s past the first %d were counted in the flows and the verdict, not printed or saved (--max-packets)",
			plural(int(n), "packet", "packets"), kept)))
	}
	if n := t.Meta.Untracked; n > 0 {
		b.line("", styled(alarm, "WARNING: "+plural(int(n), "packet", "packets")+" not tracked"),
			sp(" (the tracking map was full): their hops after a NAT rewrite may be missing."))
	}
	if v := t.Verdict; v.Outcome != "" || v.Summary != "" || v.Cause != "" || len(v.Evidence) > 0 || len(v.Fix) > 0 {
		b.nl()
		verdict(b, v)
	}
	p.flush(b)
}

// overBudget says what a packet not traced for the budget was over.
func overBudget(maxRate uint64) string {
	if maxRate == 0 {
		return "over the budget for new packets"
	}
	return fmt.Sprintf("over --max-rate %d new packets/s", maxRate)
}

// runTime is the wall-clock length of the run. Monotonic readings are dropped because a
// saved trace has none: live and `show` must compute the same duration.
func runTime(m trace.Meta) string {
	if m.StartedAt.IsZero() || m.EndedAt.IsZero() {
		return ""
	}
	d := m.EndedAt.Round(0).Sub(m.StartedAt.Round(0))
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func stopReason(r string) string {
	switch r {
	case "duration":
		return "time limit reached"
	case "count":
		return "packet count reached"
	case "signal":
		return "interrupted"
	case "demo":
		return "demo run"
	}
	return r
}

// flowLine is "flow icmp 10.0.1.2 <-> 10.0.2.2: 3 requests, 0 replies; 3 dropped (request)
// on node/veth-pod: IP_INADDRERRORS at ip_error+0x5a". Drops come first: they are why the
// reader is here.
func flowLine(f trace.FlowSummary) []span {
	counts := fmt.Sprintf("flow %s: %s, %s", flowName(f.Tuple),
		plural(f.Requests, "request", "requests"), plural(f.Replies, "reply", "replies"))
	if f.Retransmissions > 0 {
		counts += " (" + plural(f.Retransmissions, "retransmission", "retransmissions") + ")"
	}
	if f.Copies > 0 {
		counts += " (" + plural(f.Copies, "clone", "clones") + ")"
	}
	out := []span{sp(counts)}
	for _, d := range f.Drops {
		s := strconv.Itoa(d.Count) + " dropped"
		if d.Flow != "" {
			s += " (" + string(d.Flow) + ")"
		}
		where := d.Place.String()
		if d.Node != "" {
			where = strings.TrimSuffix("node "+d.Node+" "+where, " ")
		}
		if where != "" {
			s += " on " + where
		}
		if why := reasonAt(d.Reason, d.Location); why != "" {
			s += ": " + why
		}
		out = append(out, sp("; "), styled(alarm, s))
	}
	for _, c := range []struct {
		n    int
		what string
		st   style
	}{{f.Delivered, "delivered", good}, {f.LeftHost, "left host", good}, {f.Unknown, "unknown", warn}} {
		if c.n > 0 {
			out = append(out, sp("; "), styled(c.st, strconv.Itoa(c.n)+" "+c.what))
		}
	}
	return out
}

var outcomes = map[string]struct {
	label string
	st    style
}{
	"dropped":    {"DROPPED", alarm},
	"delivered":  {"delivered", good},
	"left-host":  {"left host", good},
	"no-packets": {"no packets", warn},
	"not-sent":   {"NOT SENT", alarm},
	"unknown":    {"unknown", warn},
}

func verdict(b *block, v trace.Verdict) {
	o, ok := outcomes[v.Outcome]
	if !ok {
		o.label = or(v.Outcome, "none")
	}
	head := []span{styled(bold, "Verdict: "), styled(o.st, o.label)}
	if v.Confidence != "" {
		head = append(head, sp(" (confidence: "+v.Confidence+")"))
	}
	b.line("", head...)
	for _, l := range lines(v.Summary) {
		b.line("  ", sp(l))
	}

	var rows [][]cell
	var tails [][]span
	keyed := func(key string, texts []string) {
		for i, t := range texts {
			if i > 0 {
				key = ""
			}
			rows = append(rows, []cell{{s: key}})
			tails = append(tails, []span{sp(t)})
		}
	}
	keyed("cause", lines(v.Cause))
	for i, e := range v.Evidence {
		key := ""
		if i == 0 {
			key = "evidence"
		}
		row := []cell{{s: key}, {s: e.What}, {s: e.Value}}
		var tail []span
		if e.Source != "" {
			tail = []span{sp("(source: " + e.Source + ")")}
		}
		rows = append(rows, row)
		tails = append(tails, tail)
	}
	var fixes []string
	for i, f := range v.Fix {
		for j, l := range lines(f) {
			switch {
			case len(v.Fix) > 1 && j == 0:
				l = strconv.Itoa(i+1) + ". " + l
			case len(v.Fix) > 1:
				l = "   " + l
			}
			fixes = append(fixes, l)
		}
	}
	keyed("fix", fixes)
	for i, u := range v.Unknown {
		key := ""
		if i == 0 {
			key = "not known"
		}
		rows = append(rows, []cell{{s: key}, {s: u.What}})
		tails = append(tails, []span{sp("(settle: " + u.Settle + ")")})
	}
	b.table("  ", rows, tails)
}

// lines splits text a program wrote across lines; the renderer must not let a newline in a
// verdict break the block's indentation.
func lines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
