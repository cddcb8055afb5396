package diagnose

import (
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "neighbour",
	Order:      60,
	Recognises: "`NEIGH_*`",
	Reads:      "the next hop's neighbour state",
	Fix:        "`ip neigh`, the next hop",
	Drop:       func(s *trace.DropSite, _ string) bool { return strings.HasPrefix(s.Reason, "NEIGH_") },
	Explain:    (*Diagnoser).neighbour,
})

// neighbour explains a failed address resolution for the next hop.
func (d *Diagnoser) neighbour(f *finding) {
	next := f.headers().Dst
	for _, h := range f.example.Hops {
		if h.Route != nil && h.Netns == f.site.Netns && h.Route.Gateway.IsValid() {
			next = h.Route.Gateway
		}
	}
	f.cause = "next hop " + next.String() + " not resolved"
	f.evidence = append(f.evidence, f.routeEvidence()...)
	f.fix = []string{inNetns(f.site.NetnsName, "ip neigh show "+next.String()), "check that " + next.String() + " is up and on the link of " + f.site.Ifname}
	if d.facts == nil || !next.IsValid() {
		return
	}
	if st, err := d.facts.Neighbour(f.site.Netns, f.site.Ifname, next); err == nil {
		f.evidence = append(f.evidence, trace.Evidence{What: "neighbour " + next.String() + " on " + f.site.Ifname, Value: st, Source: "netlink in netns " + f.site.NetnsName})
		f.sure = st == "FAILED" || st == "INCOMPLETE" || st == "none"
	}
}
