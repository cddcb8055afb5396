// Package diagnose turns an assembled trace into a verdict: what happened to the flow, where,
// why, and what to change. It reads the trace and, through Facts, the node's state where a
// packet died; it is tested on recorded traces with a fake Facts, no kernel involved.
package diagnose

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/pathtrace/pathtrace/trace"
)

// Diagnoser explains drop sites as they are seen, reading the node's state at that moment
// (a sysctl may be fixed by someone a minute later), and concludes the run.
type Diagnoser struct {
	facts Facts

	mu       sync.Mutex
	findings map[trace.SiteKey]*finding
	order    []trace.SiteKey
	tally    tally
	nf       []NetfilterDrop
	// routeErrs are failed route lookups of the flow (class_route.go's not-sent reads them
	// when no packet was made).
	routeErrs []trace.Hop
}

// finding is what is known of one drop site.
type finding struct {
	site     trace.DropSite
	example  trace.Packet // the first packet that died there
	count    int
	cause    string
	meaning  string
	evidence []trace.Evidence
	fix      []string
	sure     bool   // the node's state confirms the cause
	class    string // the catalogue's class that explained it
	unknown  []trace.NotKnown
	late     func(d *Diagnoser, f *finding)
}

// New makes a Diagnoser; facts may be nil (a replay: nothing to read).
func New(facts Facts) *Diagnoser {
	return &Diagnoser{facts: facts, findings: map[trace.SiteKey]*finding{}}
}

// Observe takes every completed packet; the first drop at a site is explained at once. It
// keeps nothing of p's hops past the call: a live run reuses them for later packets.
func (d *Diagnoser) Observe(p trace.Packet) {
	d.mu.Lock()
	d.tally.add(p)
	d.mu.Unlock()
	if p.Fate.Outcome != trace.Dropped || benign(p) {
		return
	}
	site := trace.SiteOf(&p)
	k := site.Key()
	d.mu.Lock()
	f, ok := d.findings[k]
	d.mu.Unlock()
	if ok {
		d.mu.Lock()
		f.count++
		d.mu.Unlock()
		return
	}
	p.Hops = slices.Clone(p.Hops)
	f = &finding{example: p, count: 1, site: site}
	d.explain(f)
	d.mu.Lock()
	d.findings[k] = f
	d.order = append(d.order, k)
	d.mu.Unlock()
}

// Netfilter records a drop the kernel's nftables tracing reported.
func (d *Diagnoser) Netfilter(n NetfilterDrop) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.nf) < 1024 {
		d.nf = append(d.nf, n)
	}
}

// benign says whether a drop is part of normal operation, not the flow's fault: a closing
// socket purging its queue, or a flooded clone reaching a host it was not for.
func benign(p trace.Packet) bool {
	// Before QUEUE_PURGE existed (6.2) the purge of a closing socket's queue was reported
	// without a reason, from the same place.
	if fn := funcOf(p.Fate.Location); fn == "sk_stream_kill_queues" || fn == "inet_csk_destroy_sock" {
		return true
	}
	if neighQueue(p.Fate.Location) {
		// A neighbour entry's queue purged (the entry destroyed: carrier lost, flushed): the
		// packets waiting for the next hop's address, not a closing socket's.
		return false
	}
	switch p.Fate.Reason {
	case "QUEUE_PURGE", "SOCKET_CLOSE", "TCP_CLOSE":
		return true
	case "OTHERHOST":
		return p.CopyOf != 0
	}
	return false
}

// Verdict concludes a trace from a replay, with no node state.
func Verdict(t *trace.Trace) trace.Verdict {
	d := New(nil)
	for _, p := range t.Packets {
		d.Observe(p)
	}
	return d.Verdict(t)
}

// Verdict concludes the run on the packets observed: the worst drop site explained, or what
// the packets' fates say. When the budget (--max-rate) left packets out, the packets it rests
// on are a sample of the flow, and it says so.
func (d *Diagnoser) Verdict(t *trace.Trace) trace.Verdict {
	v := d.verdict(t)
	if n := t.Meta.OverBudget; n > 0 && v.Outcome != "no-packets" {
		v.Summary += fmt.Sprintf(" (a sample: %d more matching packets were not traced, over the budget", n)
		if t.Meta.MaxRate > 0 {
			v.Summary += fmt.Sprintf(" of %d new packets/s", t.Meta.MaxRate)
		}
		v.Summary += ")"
	}
	return v
}

func (d *Diagnoser) verdict(t *trace.Trace) trace.Verdict {
	d.mu.Lock()
	c := d.tally
	c.left.Hops = slices.Clone(c.left.Hops) // they are in d.tally
	d.mu.Unlock()
	if c.packets == 0 {
		// A class may know why no packet was made (a send whose route lookup failed).
		if v, ok := d.concludeNoPackets(t, &c); ok {
			return v
		}
		return trace.Verdict{
			Outcome:    "no-packets",
			Summary:    fmt.Sprintf("no packet matched %s: check the addresses and that traffic was sent while tracing", t.Filter),
			Confidence: "high",
		}
	}
	sites := d.sites()
	if c.rep > 0 {
		// Kernels before drop reasons free an ICMP message they handled (an echo request they
		// answered) with kfree_skb, at icmp_rcv/icmpv6_rcv: with the answer seen, no drop.
		sites = slices.DeleteFunc(sites, func(f *finding) bool {
			if answeredICMP(&f.site) {
				c.ended += f.count
				return true
			}
			return false
		})
	}
	if len(sites) > 0 {
		return d.dropVerdict(sites)
	}
	return d.noDropVerdict(t, &c)
}

// answeredICMP is a request freed without a reason where the kernel handles ICMP: on a kernel
// without drop reasons, the end of an echo request it answered (with the reply seen) looks so.
func answeredICMP(s *trace.DropSite) bool {
	fn := funcOf(s.Location)
	return noReason(s.Reason) && s.Flow == trace.Request && (fn == "icmp_rcv" || fn == "icmpv6_rcv")
}

// sites are the drop sites seen, the one the verdict is about first.
func (d *Diagnoser) sites() []*finding {
	d.mu.Lock()
	var sites []*finding
	for _, k := range d.order {
		sites = append(sites, d.findings[k])
	}
	d.mu.Unlock()
	sort.SliceStable(sites, func(i, j int) bool { return sites[i].count > sites[j].count })
	return sites
}

// Site is the drop site the verdict is about, if packets were dropped (other than in normal
// operation): a merged trace uses it to find the node whose own verdict read that site's state.
func (d *Diagnoser) Site() (trace.DropSite, bool) {
	sites := d.sites()
	if len(sites) == 0 {
		return trace.DropSite{}, false
	}
	s := sites[0].site
	s.Count = sites[0].count
	return s, true
}

func (d *Diagnoser) dropVerdict(sites []*finding) trace.Verdict {
	f := sites[0]
	if f.late != nil {
		f.late(d, f)
	}
	where := f.site.Place.String()
	v := trace.Verdict{Outcome: "dropped", Class: f.class, Cause: f.cause, Fix: f.fix}
	v.Summary = fmt.Sprintf("the %s was dropped %sin %s", f.site.Flow, onNode(f.site.Node), where)
	if f.site.Location != "" {
		v.Summary += " at " + f.site.Location
	}
	if f.site.Reason != "" {
		v.Summary += " (" + f.site.Reason + ")"
	}
	v.Summary += ": " + f.meaning
	if f.count > 1 {
		v.Summary += fmt.Sprintf(" [%d packets]", f.count)
	}
	for _, other := range sites[1:] {
		v.Summary += fmt.Sprintf("; also %d %s dropped %sin %s (%s)", other.count, other.site.Flow, onNode(other.site.Node), other.site.Area(), other.site.Reason)
	}
	v.Evidence = append([]trace.Evidence{
		{What: "drop", Value: strings.TrimSpace(f.site.Reason + " at " + f.site.Location), Source: "skb:kfree_skb"},
	}, f.evidence...)
	v.Unknown = f.unknown
	switch {
	case f.sure:
		v.Confidence = "high"
	case f.cause == "" && (f.site.Reason == "" || f.site.Reason == "NOT_SPECIFIED"):
		v.Confidence = "low" // neither the kernel nor the node's state says why
	default:
		v.Confidence = "medium"
	}
	if v.Cause == "" {
		v.Cause = strings.ToLower(strings.ReplaceAll(f.site.Reason, "_", " "))
	}
	return v
}

// onNode names the node of a drop site in a merged trace ("on node node-b "), "" otherwise.
func onNode(node string) string {
	if node == "" {
		return ""
	}
	return "on node " + node + " "
}

// explain fills in what the reason means and, through the catalogue's class that recognises
// the drop, what the node's state says about it.
func (d *Diagnoser) explain(f *finding) {
	f.meaning = Explain(f.site.Reason)
	if c := classOf(&f.site); c != nil {
		f.class = c.Name
		c.Explain(d, f)
	}
}
