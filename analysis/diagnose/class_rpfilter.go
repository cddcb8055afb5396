package diagnose

import (
	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "rp-filter",
	Order:      20,
	Recognises: "`IP_RPFILTER`",
	Reads:      "`rp_filter` of `all` and the device, and the effective (max) value",
	Fix:        "loose mode or the route back",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "IP_RPFILTER" },
	Explain:    (*Diagnoser).rpFilter,
})

// rpFilter explains a reverse-path filter drop: the effective value is the larger of all's and
// the device's.
func (d *Diagnoser) rpFilter(f *finding) {
	dev := f.site.Ifname
	f.cause = "reverse-path filter"
	f.fix = []string{inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf."+dev+".rp_filter=2   # loose mode, or fix the route back to "+f.headers().Src.String())}
	if d.facts == nil {
		return
	}
	keys := []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf." + dev + ".rp_filter"}
	eff := "0"
	for _, k := range keys {
		if v, err := d.facts.Sysctl(f.site.Netns, k); err == nil {
			f.evidence = append(f.evidence, trace.Evidence{What: k, Value: v, Source: f.sysctlSource(k)})
			if v > eff {
				eff = v
			}
		}
	}
	f.evidence = append(f.evidence, trace.Evidence{What: "effective rp_filter on " + dev, Value: eff, Source: "max(all, device)"})
	if eff != "0" {
		f.sure = true
		f.fix = append(f.fix, inNetns(f.site.NetnsName, "sysctl -w net.ipv4.conf.all.rp_filter=0   # all's value counts too: the effective one is the max"))
	}
}
