package run

import (
	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/tracer/nodestate"
)

// RouteDecision reads the route, the policy rule and the MTUs the namespace's tables give a
// packet (diagnose's routeFacts).
func (f nodeFacts) RouteDecision(netns uint32, q diagnose.RouteQuery) (diagnose.RouteDecision, error) {
	d, err := f.r.RouteDecision(netns, nodestate.RouteQuery{Src: q.Src, Dst: q.Dst, Iif: q.Iif, IifName: q.IifName})
	return diagnose.RouteDecision{
		Route: d.Route, Type: d.Type, Prefix: d.Prefix, Table: d.Table, Dev: d.Dev, Gw: d.Gw,
		Rule: d.Rule, RulePref: d.RulePref, RuleAction: d.RuleAction, Errno: d.Errno, Exact: d.Exact,
		LinkMTU: d.LinkMTU, RouteMTU: d.RouteMTU, PathMTU: d.PathMTU, MTULock: d.MTULock,
		Covering: d.Covering, CoveringDevs: d.CoveringDevs,
	}, err
}

// Counters reads the namespace's protocol counters, as nstat names them (diagnose's
// counterFacts).
func (f nodeFacts) Counters(netns uint32) (map[string]uint64, error) { return f.r.Counters(netns) }
