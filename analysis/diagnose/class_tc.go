package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "tc-program",
	Order:      40,
	Recognises: "`TC_INGRESS` / `TC_EGRESS`, a drop in `tcf_*`, `sch_handle_*`, `tcx_*`",
	Reads:      "the tc and tcx BPF programs on the device and direction (name, id, tag); Cilium's `cil_*` named as policy enforcement; the classic filters there (u32, flower, matchall with a drop action) as `tc filter show` prints them; the device's kind",
	Fix:        "`tc filter show`/`tc filter del ... pref N` in that namespace; for Cilium `cilium monitor --type drop`, the NetworkPolicies",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "TC_INGRESS" || s.Reason == "TC_EGRESS" || strings.HasPrefix(fn, "tcf_") || strings.HasPrefix(fn, "sch_handle_") || strings.HasPrefix(fn, "tcx_")
	},
	Explain: (*Diagnoser).tcProgram,
})

// Before 5.17 a tc drop is a plain kfree_skb from the inlined ingress or egress hook: it is
// the tc program if one is attached there, which only the node's state can say.
var _ = register(Class{
	Name:       "tc-program-inferred",
	Order:      41,
	Recognises: "a drop without reason in `__netif_receive_skb_core` / `__dev_queue_xmit` (kernels before 5.17)",
	Reads:      "the tc programs attached in that direction",
	Fix:        "as tc-program, with medium confidence",
	Drop: func(s *trace.DropSite, fn string) bool {
		return noReason(s.Reason) && (strings.HasPrefix(fn, "__netif_receive_skb_core") || strings.HasPrefix(fn, "__dev_queue_xmit"))
	},
	Explain: func(d *Diagnoser, f *finding) {
		fn := funcOf(f.site.Location)
		d.tcProgramGuess(f, strings.HasPrefix(fn, "__dev_queue_xmit"))
	},
})

// tcProgram lists the programs on the tc hook that dropped the packet: on Kubernetes usually
// the CNI's policy enforcement (incident 004).
func (d *Diagnoser) tcProgram(f *finding) {
	dir := "ingress"
	if f.site.Reason == "TC_EGRESS" || strings.Contains(f.site.Location, "egress") {
		dir = "egress"
	}
	dev := f.site.Ifname
	f.cause = "tc " + dir + " program on " + dev
	f.fix = []string{inNetns(f.site.NetnsName, "tc filter show dev "+dev+" "+dir)}
	if d.facts == nil {
		return
	}
	progs, err := d.facts.TCPrograms(f.site.Netns, dev, dir)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "tc " + dir + " programs on " + dev, Value: err.Error(), Source: "read failed"})
		return
	}
	if len(progs) == 0 && d.tcFilters(f, dir, true) {
		return
	}
	var names []string
	cilium := false
	for _, p := range progs {
		f.evidence = append(f.evidence, trace.Evidence{
			What:   fmt.Sprintf("%s %s program on %s", p.Kind, p.Direction, dev),
			Value:  fmt.Sprintf("%s (id %d, tag %s)", p.Name, p.ID, p.Tag),
			Source: "netlink",
		})
		names = append(names, p.Name)
		cilium = cilium || strings.HasPrefix(p.Name, "cil_")
	}
	if len(progs) == 0 {
		f.evidence = append(f.evidence, trace.Evidence{What: "tc " + dir + " programs on " + dev, Value: "none now (detached since?)", Source: "netlink"})
		return
	}
	d.tcFilters(f, dir, false) // a classic filter that drops may sit beside them: show it too
	f.sure = true
	f.cause = fmt.Sprintf("tc %s program %s on %s", dir, strings.Join(names, ", "), dev)
	f.meaning = fmt.Sprintf("the BPF program %s attached to %s's %s dropped it", strings.Join(names, ", "), dev, dir)
	if cilium {
		f.meaning += ": Cilium's policy enforcement. Traffic from nodes Cilium does not manage arrives as identity \"world\""
		f.fix = []string{
			"cilium monitor --type drop   # in the Cilium agent on this node: the policy verdict and identities",
			"check the NetworkPolicies / CiliumNetworkPolicies selecting the pod behind " + dev + " (allow the source, e.g. fromEntities: world or the node CIDR)",
		}
	}
}

// tcProgramGuess explains a reasonless drop in the device layer by the tc programs attached in
// that direction, when there are any; it says it guessed.
func (d *Diagnoser) tcProgramGuess(f *finding, egress bool) {
	if d.facts == nil {
		return
	}
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	progs, err := d.facts.TCPrograms(f.site.Netns, f.site.Ifname, dir)
	if err != nil {
		return
	}
	if len(progs) == 0 && !d.hasDroppingFilter(f, dir) {
		return
	}
	reason := f.site.Reason
	f.site.Reason = "TC_" + strings.ToUpper(dir)
	d.tcProgram(f)
	f.site.Reason = reason
	f.sure = false
	f.meaning += " (the kernel gives no specific drop reason here: the tc " + dir + " hook is where " + f.site.Location + " drops, and this is attached there)"
}

// TCFilter is a classic (non-BPF) tc filter, as `tc filter show` prints it.
type TCFilter struct {
	Kind, Handle, Protocol, Text string
	Pref                         uint16
	Drops                        bool // one of its actions drops
}

// tcFilterFacts reads a device's classic tc filters and its kind (an optional Facts extension).
type tcFilterFacts interface {
	TCFilters(netns uint32, dev, direction string) (kind string, filters []TCFilter, err error)
}

// tcFilters names the classic filters that drop on dev's hook in dir as evidence and, when
// explain (no BPF program is there), as the cause; it reports whether it explained the drop.
func (d *Diagnoser) tcFilters(f *finding, dir string, explain bool) bool {
	tf, ok := d.facts.(tcFilterFacts)
	if !ok {
		return false
	}
	dev := f.site.Ifname
	kind, filters, err := tf.TCFilters(f.site.Netns, dev, dir)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "tc " + dir + " filters on " + dev, Value: err.Error(), Source: "read failed"})
		return false
	}
	var dropping []TCFilter
	for _, t := range filters {
		if t.Drops {
			dropping = append(dropping, t)
		}
	}
	if len(dropping) == 0 {
		return false
	}
	what := fmt.Sprintf("tc %s filter on %s (%s)", dir, dev, kind)
	for _, t := range dropping {
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: t.Text, Source: "netlink (tc filter show dev " + dev + " " + dir + ") in netns " + f.site.NetnsName})
	}
	if !explain {
		return false
	}
	t := dropping[0]
	f.sure = len(dropping) == 1
	f.cause = fmt.Sprintf("tc %s filter %s on %s (pref %d)", dir, t.Kind, dev, t.Pref)
	f.meaning = fmt.Sprintf("a %s filter on the %s hook of %s (a %s device), with a drop action, matched it: %s", t.Kind, dir, dev, kind, t.Text)
	if len(dropping) > 1 {
		f.meaning += fmt.Sprintf(" (one of %d filters there that drop: the trace does not say which matched)", len(dropping))
	}
	f.fix = []string{
		inNetns(f.site.NetnsName, "tc -s filter show dev "+dev+" "+dir+"   # the filters and their counters"),
		inNetns(f.site.NetnsName, fmt.Sprintf("tc filter del dev %s %s pref %d   # if this filter should not drop it (removes every filter of pref %d)", dev, dir, t.Pref, t.Pref)),
	}
	return true
}

// hasDroppingFilter says whether a classic filter with a drop action sits on the drop's device
// in dir.
func (d *Diagnoser) hasDroppingFilter(f *finding, dir string) bool {
	tf, ok := d.facts.(tcFilterFacts)
	if !ok {
		return false
	}
	_, filters, err := tf.TCFilters(f.site.Netns, f.site.Ifname, dir)
	if err != nil {
		return false
	}
	for _, t := range filters {
		if t.Drops {
			return true
		}
	}
	return false
}
