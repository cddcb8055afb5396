package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var netfilterClass = register(Class{
	Name:       "netfilter",
	Order:      30,
	Recognises: "`NETFILTER_DROP`, or a drop in `nf_*`/`nft_*`",
	Reads:      "the rule from nftables tracing: table, chain, handle, rule text, hook (or the chain's policy); the `nf_hook_slow` verdict where a function backend saw it",
	Fix:        "`nft delete rule ... handle N`; without nftables tracing (legacy iptables, `--no-nftrace`), `nft list ruleset` and `iptables-save`",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "NETFILTER_DROP" || strings.HasPrefix(fn, "nf_") || strings.HasPrefix(fn, "nft_")
	},
	Explain: func(_ *Diagnoser, f *finding) {
		f.cause = "netfilter rule"
		// The rule is named when the verdict is made: trace events come on their own socket.
		f.late = (*Diagnoser).netfilter
	},
})

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
		f.cause = "netfilter rule"
		if hook != "" {
			f.cause = "netfilter rule in the " + hook + " hook"
			f.sure = true
		}
		f.fix = []string{
			inNetns(f.site.NetnsName, "nft list ruleset"),
			inNetns(f.site.NetnsName, "iptables-save"),
		}
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: "not identified (legacy iptables rules, or nftables tracing off)", Source: "nftables trace"})
		return
	}
	f.sure = true
	rule := fmt.Sprintf("table %s %s chain %s", hit.Family, hit.Table, hit.Chain)
	if hit.Policy {
		f.cause = fmt.Sprintf("chain %s policy drop", hit.Chain)
		f.meaning = fmt.Sprintf("no rule of %s accepted it and the chain's policy is drop", rule)
		f.evidence = append(f.evidence, trace.Evidence{What: "chain policy", Value: rule + " policy drop", Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("nft insert rule %s %s %s ip saddr %s accept   # or fix the policy", hit.Family, hit.Table, hit.Chain, h.Src))}
	} else {
		f.cause = fmt.Sprintf("netfilter rule %s %s %s handle %d", hit.Family, hit.Table, hit.Chain, hit.Handle)
		f.meaning = fmt.Sprintf("the rule \"%s\" in %s (handle %d) dropped it", hit.Rule, rule, hit.Handle)
		f.evidence = append(f.evidence, trace.Evidence{What: "rule", Value: fmt.Sprintf("%s handle %d: %s", rule, hit.Handle, hit.Rule), Source: "nftables trace"})
		f.fix = []string{inNetns(f.site.NetnsName, fmt.Sprintf("nft delete rule %s %s %s handle %d   # after checking why it is there", hit.Family, hit.Table, hit.Chain, hit.Handle))}
	}
	if hit.Hook != "" {
		f.evidence = append(f.evidence, trace.Evidence{What: "hook", Value: hit.Hook, Source: "nftables trace"})
	}
}
