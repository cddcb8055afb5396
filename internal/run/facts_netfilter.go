package run

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
