package run

import "github.com/pathtrace/pathtrace/analysis/diagnose"

// LegacyIptables lists the namespace's legacy iptables tables (the netfilter class's
// legacyFacts): a netfilter drop no nftables rule was seen making is then told as legacy.
func (f nodeFacts) LegacyIptables(netns uint32, ipv6 bool) ([]string, error) {
	return f.r.LegacyIptables(netns, ipv6)
}

// NftablesTraced says whether nftables tracing covered the namespace in this run: its
// nftables drops would have been reported.
func (f nodeFacts) NftablesTraced(netns uint32) bool {
	_, ok := nftraced.Load(netns)
	return ok
}

// LegacyIptablesRules reads a legacy iptables (ip6tables when ipv6) table's rules and counters.
func (f nodeFacts) LegacyIptablesRules(netns uint32, table string, ipv6 bool) ([]diagnose.LegacyRule, error) {
	rules, err := f.r.LegacyIptablesRules(netns, table, ipv6)
	out := make([]diagnose.LegacyRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, diagnose.LegacyRule{Table: r.Table, Chain: r.Chain, Hook: r.Hook, Spec: r.Spec, Target: r.Target, Packets: r.Packets})
	}
	return out, err
}
