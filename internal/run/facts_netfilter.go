package run

// LegacyIptables lists the namespace's legacy iptables tables (the netfilter class's
// legacyFacts): a netfilter drop no nftables rule was seen making is then told as legacy.
func (f nodeFacts) LegacyIptables(netns uint32, ipv6 bool) ([]string, error) {
	return f.r.LegacyIptables(netns, ipv6)
}
