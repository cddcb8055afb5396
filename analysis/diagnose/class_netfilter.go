package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "netfilter",
	Order:      32, // after conntrack's own functions (nf_conntrack_*), which it would take too
	Recognises: "`NETFILTER_DROP`, or a drop in `nf_*`/`nft_*`",
	Reads:      "the rule from nftables tracing, in every family (ip, ip6, inet, bridge, netdev) and hook: table, chain, handle, rule text (as `iptables -S` prints it for iptables-nft rules, with their xt matches decoded), hook, or the chain's policy; conntrack's state of the packet (Linux 6.6+); the `nf_hook_slow` verdict where a function backend saw it; the namespace's legacy (x_tables) iptables tables, and their rules and counters (IPv4), when no nftables rule matched",
	Fix:        "`nft delete rule ... handle N`, or `iptables -t T -D CHAIN <rule>` for an iptables-nft rule; for a legacy iptables drop, `iptables-legacy -t T -D CHAIN <rule>` when one DROP rule counted packets, else `iptables-legacy-save -c` (the rule whose counter grows)",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "NETFILTER_DROP" || strings.HasPrefix(fn, "nf_") || strings.HasPrefix(fn, "nft_")
	},
	Explain: func(_ *Diagnoser, f *finding) {
		f.cause = "netfilter rule"
		// The rule is named when the verdict is made: trace events come on their own socket.
		f.late = (*Diagnoser).netfilter
	},
})

// The conntrack class is the netfilter class's drops that turn on conntrack's judgement: a rule
// matching a state (`--ctstate INVALID`, `ct state`) or a policy that took a packet conntrack
// saw as new. The netfilter class recognises and explains them; the verdict names this class.
var _ = register(Class{
	Name:       "conntrack",
	Order:      30,
	Recognises: "a drop in conntrack's own functions (`nf_conntrack_*`, `nf_ct_*`); and the netfilter class's drops whose rule matches conntrack's state (`-m conntrack --ctstate`, `ct state`), or a chain policy drop of a packet conntrack saw as new",
	Reads:      "conntrack's state of the packet from nftables tracing (Linux 6.6+), else the matching rule's state; `net.netfilter.nf_conntrack_tcp_loose` for an INVALID TCP segment",
	Fix:        "the rule's `iptables -D` / `nft delete rule`, or the rule that should accept the flow; `conntrack -L` to see whether conntrack knows the connection",
	Drop: func(_ *trace.DropSite, fn string) bool {
		return strings.HasPrefix(fn, "nf_conntrack") || strings.HasPrefix(fn, "nf_ct_")
	},
	Explain: func(_ *Diagnoser, f *finding) {
		f.cause = "conntrack"
		f.fix = []string{inNetns(f.site.NetnsName, "conntrack -S   # insert_failed, drop, early_drop, invalid")}
		f.late = (*Diagnoser).netfilter
	},
})

// legacyFacts reads a namespace's legacy iptables (x_tables) tables: those listed in
// /proc/net/ip_tables_names (ip6_tables_names for IPv6). nftables tracing cannot see their
// rules; their being there is what tells a legacy drop from an unseen nftables one.
type legacyFacts interface {
	LegacyIptables(netns uint32, ipv6 bool) ([]string, error)
}

// LegacyRule is a rule of a legacy iptables table as `iptables-legacy -S` prints it (matches
// by name only), with the hook of its built-in chain ("" in a user chain) and its counter.
type LegacyRule struct {
	Table, Chain, Hook, Spec, Target string
	Packets                          uint64
}

// legacyRulesFacts reads a legacy table's rules (a table legacyFacts listed; ip6tables' when
// ipv6).
type legacyRulesFacts interface {
	LegacyIptablesRules(netns uint32, table string, ipv6 bool) ([]LegacyRule, error)
}

// legacyDrops lists the legacy rules that drop (DROP, REJECT) and have counted packets: the
// candidates for a legacy drop.
func (d *Diagnoser) legacyDrops(netns uint32, tables []string, ipv6 bool) []LegacyRule {
	rf, ok := d.facts.(legacyRulesFacts)
	if !ok {
		return nil
	}
	var out []LegacyRule
	for _, t := range tables {
		rules, err := rf.LegacyIptablesRules(netns, t, ipv6)
		if err != nil {
			continue
		}
		for _, r := range rules {
			if (r.Target == "DROP" || r.Target == "REJECT") && r.Packets > 0 {
				out = append(out, r)
			}
		}
	}
	return out
}

// nftracedFacts says whether nftables tracing covered a namespace during the run (its
// nftables drops would have been reported).
type nftracedFacts interface {
	NftablesTraced(netns uint32) bool
}

// netfilter names the rule the kernel's nftables tracing saw drop the packet. It runs when the
// verdict is made: trace events arrive on their own socket, a little after the drop.
func (d *Diagnoser) netfilter(f *finding) {
	h := f.headers()
	d.mu.Lock()
	var hit *NetfilterDrop
	for i := range d.nf {
		n := &d.nf[i]
		if n.Netns != f.site.Netns {
			continue
		}
		if (n.Src == h.Src && n.Dst == h.Dst) || (n.Src == h.Dst && n.Dst == h.Src) {
			hit = n
			break
		}
	}
	d.mu.Unlock()
	// fexit/kretprobe on nf_hook_slow saw which hook returned the drop.
	hook := ""
	for _, hop := range f.example.Hops {
		if fn := hop.Func; fn != nil && fn.Name == "nf_hook_slow" && fn.Verdict == "DROP" {
			hook = fn.Hook
			f.evidence = append(f.evidence, trace.Evidence{What: "netfilter verdict", Value: fn.Hook + " " + fn.Family + ": DROP", Source: hop.Probe})
		}
	}
	if hit == nil {
		if f.cause == "conntrack" {
			// Freed in conntrack's own code, no rule: conntrack is the cause.
			f.cause = "conntrack dropped the packet itself (" + strings.SplitN(f.site.Location, "+", 2)[0] + ")"
			f.meaning = "conntrack's own code freed it, not a rule: a full conntrack table, a helper, or a packet conntrack's checks refuse"
			return
		}
		d.netfilterUnnamed(f, hook, h.Src.Is6())
		return
	}
	f.sure = true
	rule := fmt.Sprintf("table %s %s chain %s", hit.Family, hit.Table, hit.Chain)
	ct := ctFact(hit)
	if hit.Policy {
		f.cause = fmt.Sprintf("chain %s policy drop", hit.Chain)
		f.meaning = fmt.Sprintf("no rule of %s accepted it and the chain's policy is drop", rule)
		if hit.CtState == "new" {
			f.meaning += fmt.Sprintf("; conntrack saw it as the first packet of a new flow from %s, which no rule of the chain accepts (rules for established flows take only their later packets)", h.Src)
		}
		f.evidence = append(f.evidence, trace.Evidence{What: "chain policy", Value: rule + " policy drop", Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("nft insert rule %s %s %s %s saddr %s accept   # or fix the policy", hit.Family, hit.Table, hit.Chain, ipWord(h.Src.Is6()), h.Src))}
	} else {
		f.cause = fmt.Sprintf("netfilter rule %s %s %s handle %d", hit.Family, hit.Table, hit.Chain, hit.Handle)
		value := fmt.Sprintf("%s handle %d: %s", rule, hit.Handle, hit.Rule)
		shown := hit.Rule
		if hit.Iptables != "" {
			shown = hit.Iptables
			value = fmt.Sprintf("%s (%s table %s; nft: %s)", hit.Iptables, iptablesCmd(hit.Family), hit.Table, value)
		}
		f.meaning = fmt.Sprintf("the rule \"%s\" in %s (handle %d) dropped it", shown, rule, hit.Handle)
		if hit.Iptables != "" {
			f.meaning = fmt.Sprintf("the %s rule \"%s\" in table %s (nft: %s handle %d) dropped it", iptablesCmd(hit.Family), shown, hit.Table, rule, hit.Handle)
		}
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: value, Source: "nftables trace"})
		del := inNetns(f.site.NetnsName, fmt.Sprintf("nft delete rule %s %s %s handle %d   # after checking why it is there", hit.Family, hit.Table, hit.Chain, hit.Handle))
		if spec, ok := strings.CutPrefix(hit.Iptables, "-A "+hit.Chain+" "); ok {
			f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("%s -t %s -D %s %s   # after checking why it is there", iptablesCmd(hit.Family), hit.Table, hit.Chain, spec)), del}
		} else {
			f.fix = []string{del}
		}
	}
	if ct != "" {
		f.cause += ": " + ct
		f.class = "conntrack" // the conntrack class (registered above)
	}
	if hit.CtState != "" {
		v := hit.CtState
		if hit.CtDirection != "" {
			v += " (" + hit.CtDirection + " direction)"
		}
		f.evidence = append(f.evidence, trace.Evidence{What: "conntrack state", Value: v, Source: "nftables trace"})
	}
	if ct != "" && strings.Contains(ct, "INVALID") {
		d.ctInvalid(f, &h)
	}
	if hit.Hook != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "hook", Value: hit.Hook, Source: "nftables trace"})
	}
}

// ctFact is the one conntrack fact a rule's drop rests on: the state the trace saw, when the
// rule (or, for a policy, its absence) is about state; or, when the kernel does not report
// the state, what the matching rule's own --ctstate / ct state says it was.
func ctFact(hit *NetfilterDrop) string {
	rule := hit.Iptables + " " + hit.Rule
	about := strings.Contains(rule, "--ctstate") || strings.Contains(rule, "ct state")
	switch {
	case hit.CtState == "invalid" && (about || hit.Policy):
		return "conntrack judged the packet INVALID"
	case hit.CtState != "" && hit.Policy:
		return "conntrack state " + hit.CtState
	case hit.CtState != "" && about:
		return "conntrack state " + strings.ToUpper(hit.CtState)
	case hit.CtState == "" && !hit.Policy && ruleStateIs(hit, "INVALID"):
		// The rule matched, so its condition held.
		return "conntrack judged the packet INVALID"
	}
	return ""
}

// ruleStateIs reports whether the rule's only state condition is exactly state.
func ruleStateIs(hit *NetfilterDrop, state string) bool {
	if strings.Contains(hit.Iptables, "! --ctstate") {
		return false
	}
	return strings.Contains(hit.Iptables+" ", "--ctstate "+state+" ") || strings.Contains(hit.Rule+" ", "ct state "+strings.ToLower(state)+" ")
}

// ctInvalid follows an INVALID drop one step: what makes conntrack judge a packet so, and the
// node's TCP window settings.
func (d *Diagnoser) ctInvalid(f *finding, h *trace.Headers) {
	f.meaning += "; conntrack found no connection the packet belongs to, or it is outside the connection's window (a TCP segment other than SYN for a connection conntrack never saw or forgot: asymmetric routing, a flushed or full conntrack table, a reply that took another path)"
	if d.facts == nil || h.Proto != trace.ProtoTCP {
		f.fix = append(f.fix, inNetns(f.site.NetnsName, "conntrack -L   # is the connection there?"))
		return
	}
	const loose = "net.netfilter.nf_conntrack_tcp_loose"
	if v, err := d.facts.Sysctl(f.site.Netns, loose); err == nil {
		f.evidence = append(f.evidence, trace.Evidence{What: loose, Value: v, Source: f.sysctlSource(loose)})
		if v == "0" {
			f.meaning += fmt.Sprintf("; %s=0: conntrack does not pick up connections already under way", loose)
			f.fix = append(f.fix, inNetns(f.site.NetnsName, "sysctl -w "+loose+"=1   # if connections under way must survive a conntrack flush or failover"))
		}
	}
	f.fix = append(f.fix, inNetns(f.site.NetnsName, fmt.Sprintf("conntrack -L -p tcp --dport %d   # is the connection there?", h.Dport)))
}

// netfilterUnnamed words a netfilter drop no nftables rule was seen making: a legacy
// iptables rule when the namespace has x_tables tables (nftables tracing cannot see them),
// else an unidentified rule.
func (d *Diagnoser) netfilterUnnamed(f *finding, hook string, ipv6 bool) {
	// nf_hook_slow's verdict names hooks as the kernel's NF_INET_* ("FORWARD"); nft and
	// iptables users read them in lower case, as nftables tracing gives them.
	hook = strings.ToLower(hook)
	where := "a netfilter drop"
	if hook != "" {
		where = "a netfilter drop in hook " + hook
		f.sure = true
	}
	f.cause = "netfilter rule"
	if hook != "" {
		f.cause = "netfilter rule in the " + hook + " hook"
	}
	fn := funcOf(f.site.Location)
	if strings.HasPrefix(fn, "nft_") {
		// Freed by nf_tables itself: an nftables rule (or iptables-nft), whatever else is there.
		f.cause = where + " by an nftables rule"
		f.fix = []string{inNetns(f.site.NetnsName, "nft -a list ruleset"), inNetns(f.site.NetnsName, "nft monitor trace   # with a rule setting meta nftrace for the flow")}
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: "an nftables rule (the drop is in " + fn + "), not identified: nftables tracing off or unavailable, or its events lost", Source: "nftables trace"})
		return
	}
	var legacy []string
	lf, ok := d.facts.(legacyFacts)
	if ok {
		legacy, _ = lf.LegacyIptables(f.site.Netns, ipv6)
	}
	save := "iptables-legacy-save -c"
	if ipv6 {
		save = "ip6tables-legacy-save -c"
	}
	traced := false
	if tf, ok := d.facts.(nftracedFacts); ok {
		traced = tf.NftablesTraced(f.site.Netns)
	}
	if len(legacy) > 0 && !traced {
		// Without tracing there, an nftables rule is as likely: both are told, with both commands.
		f.cause = where + "; rule not identified: legacy iptables or nftables (nftables tracing did not cover this namespace)"
		f.meaning = fmt.Sprintf("the namespace has legacy (x_tables) iptables tables (%s), and nftables tracing did not cover it: the rule may be either", strings.Join(legacy, ", "))
		f.evidence = append(f.evidence,
			trace.Evidence{What: "legacy iptables tables", Value: strings.Join(legacy, ", "), Source: "/proc/net/ip" + map[bool]string{true: "6", false: ""}[ipv6] + "_tables_names"},
			trace.Evidence{What: "rule", Value: "not identified (nftables tracing off or unavailable in this namespace)", Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, save+"   # the rule whose packet counter grows with each drop"), inNetns(f.site.NetnsName, "nft -a list ruleset")}
		return
	}
	if len(legacy) > 0 {
		cands := d.legacyDrops(f.site.Netns, legacy, ipv6)
		tool := strings.TrimSuffix(save, "-save -c")
		if hook == "" && len(cands) == 1 && cands[0].Hook != "" {
			// The only dropping rule that counted packets: its chain's hook.
			where = "a netfilter drop in hook " + cands[0].Hook
		}
		f.cause = where + "; no nftables rule matched: legacy iptables (" + strings.TrimSuffix(save, " -c") + " would show it)"
		f.meaning = fmt.Sprintf("nftables tracing saw no rule drop it, and the namespace has legacy (x_tables) iptables tables (%s), whose rules nftables cannot see", strings.Join(legacy, ", "))
		f.evidence = append(f.evidence,
			trace.Evidence{What: "legacy iptables tables", Value: strings.Join(legacy, ", "), Source: "/proc/net/ip" + map[bool]string{true: "6", false: ""}[ipv6] + "_tables_names"},
			trace.Evidence{What: "rule", Value: "no nftables rule matched: a legacy iptables rule (x_tables), not visible to nftables tracing", Source: "nftables trace"})
		for _, c := range cands {
			f.evidence = append(f.evidence, trace.Evidence{What: "legacy rule that drops and counted packets", Value: fmt.Sprintf("%s (table %s, %d packets)", c.Spec, c.Table, c.Packets), Source: tool + " counters (" + map[bool]string{true: "IP6T", false: "IPT"}[ipv6] + "_SO_GET_ENTRIES)"})
		}
		f.fix = []string{inNetns(f.site.NetnsName, save+"   # the rule whose packet counter grows with each drop")}
		if len(cands) == 1 {
			f.meaning += fmt.Sprintf("; the only legacy rule that drops and has counted packets is \"%s\" in table %s", cands[0].Spec, cands[0].Table)
			spec := strings.TrimPrefix(cands[0].Spec, "-A "+cands[0].Chain+" ")
			f.fix = append(f.fix, inNetns(f.site.NetnsName, fmt.Sprintf("%s -t %s -D %s %s   # if its counter grows with the drops", tool, cands[0].Table, cands[0].Chain, spec)))
		}
		return
	}
	f.fix = []string{
		inNetns(f.site.NetnsName, "nft list ruleset"),
		inNetns(f.site.NetnsName, "iptables-save"),
	}
	why := "a legacy iptables rule, or nftables tracing off or its events lost"
	if ok {
		why = "nftables tracing off or unavailable, or its events lost; no legacy iptables tables in the namespace"
	}
	f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: "not identified (" + why + ")", Source: "nftables trace"})
}

func iptablesCmd(family string) string {
	if family == "ip6" {
		return "ip6tables"
	}
	return "iptables"
}

func ipWord(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}
