package diagnose

import (
	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "no-route",
	Order:      70,
	Recognises: "`IP_OUTNOROUTES`",
	Reads:      "the route lookups from the trace",
	Fix:        "`ip route get`",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "IP_OUTNOROUTES" },
	Explain:    (*Diagnoser).noRoute,
})

func (d *Diagnoser) noRoute(f *finding) {
	f.cause = "no route"
	f.evidence = append(f.evidence, f.routeEvidence()...)
	f.fix = []string{inNetns(f.site.NetnsName, "ip route get "+f.headers().Dst.String())}
	f.sure = len(f.evidence) > 0
}
