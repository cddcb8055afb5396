package nodestate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// RouteQuery is one routing decision to explain: an input lookup (a forwarded packet, Iif set)
// or an output lookup (a packet the namespace sends, Iif 0).
type RouteQuery struct {
	Src, Dst netip.Addr
	Iif      int    // input device's index; 0 for an output lookup
	IifName  string // its name, if the index is not known
	Mark     uint32
}

// RouteDecision is the route the namespace's tables give a query, as the user's own tools
// print it, and the policy rule that chose the table.
type RouteDecision struct {
	Route  string // as `ip route` prints it: "unreachable 10.1.2.2 table 100"
	Type   string // "unicast", "unreachable", "blackhole", "prohibit", "throw", "local"...
	Prefix string // the route's destination as `ip route` prints it: "default", "10.1.2.2"
	Table  int
	Dev    string
	Gw     netip.Addr
	// Rule is the `ip rule` line that chose the table ("100: from 10.1.1.2 lookup 100"),
	// RulePref its preference; both empty when the default rules chose main.
	Rule     string
	RulePref int
	// RuleAction is set when a policy rule decided without a table: "unreachable",
	// "prohibit" or "blackhole" (Rule is that rule; Route is empty).
	RuleAction string
	// Errno is the kernel's own lookup's error ("EHOSTUNREACH"...), "" when it found a route.
	Errno string
	// Exact: the kernel's lookup agrees with the route found in the tables (same table and
	// prefix, or the error that route type gives).
	Exact bool
	// LinkMTU is Dev's MTU; RouteMTU the route's mtu metric (0: none) and MTULock its lock;
	// PathMTU the MTU the kernel's lookup reports (a learnt path MTU exception, or the route's).
	LinkMTU, RouteMTU, PathMTU int
	MTULock                    bool
	// Covering lists the other routes of the route's table that match the destination too,
	// less specific (the connected route a more specific one overrides), as `ip route` prints
	// them, each with its device in CoveringDevs.
	Covering, CoveringDevs []string
}

var typeErrno = map[string]unix.Errno{
	"unreachable": unix.EHOSTUNREACH,
	"blackhole":   unix.EINVAL,
	"prohibit":    unix.EACCES,
	"":            unix.ENETUNREACH,
}

// RouteDecision explains the routing decision for q in the namespace with inode ino: the
// kernel's own lookup (RTM_GETROUTE, with the input device for an input lookup) and, since the
// kernel answers an unreachable, blackhole or prohibit route only with an errno, the route
// and the policy rule found by walking `ip rule` and the tables the way the kernel does.
func (r *Reader) RouteDecision(ino uint32, q RouteQuery) (RouteDecision, error) {
	var d RouteDecision
	q.Dst, q.Src = q.Dst.Unmap(), q.Src.Unmap()
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		if q.Iif == 0 && q.IifName != "" {
			if l, err := h.LinkByName(q.IifName); err == nil {
				q.Iif = l.Attrs().Index
			}
		}
		kernel, kerr := kernelLookup(h, q, true)
		var errno unix.Errno
		if kerr != nil {
			if !errors.As(kerr, &errno) {
				return kerr
			}
			d.Errno = unix.ErrnoName(errno)
		}
		walked, rule, covering, werr := walkRules(h, q)
		switch {
		case kerr == nil:
			fill(h, &d, kernel)
			d.Exact = werr == nil && walked != nil && walked.Table == kernel.Table && sameDst(walked.Dst, kernel.Dst)
			if d.Exact || (rule != nil && rule.Table == kernel.Table) {
				d.Rule, d.RulePref = ruleText(rule), rulePref(rule)
			}
			// The lookup without FIBMatch reports the MTU it would use, a learnt path MTU
			// included (`ip route get`'s "mtu").
			if c, err := kernelLookup(h, q, false); err == nil {
				d.PathMTU = c.MTU
			}
		case walked != nil:
			fill(h, &d, *walked)
			want, ok := typeErrno[d.Type]
			d.Exact = ok && want == errno
			d.Rule, d.RulePref = ruleText(rule), rulePref(rule)
		case rule != nil && ruleActionErrno[rule.Type] != 0:
			d.RuleAction, d.Type = ruleActionNames[rule.Type], ruleActionNames[rule.Type]
			d.Exact = werr == nil && errno == ruleActionErrno[rule.Type]
			d.Rule, d.RulePref = ruleText(rule), rulePref(rule)
		default:
			// No table has a route: the kernel says ENETUNREACH.
			d.Exact = werr == nil && errno == unix.ENETUNREACH
			if werr != nil {
				return werr
			}
		}
		if walked != nil && walked.Table == d.Table && prefixText(walked.Dst) == d.Prefix {
			for _, c := range covering {
				d.Covering = append(d.Covering, formatRoute(h, c))
				dev := ""
				if c.LinkIndex > 0 {
					dev = ifname(h, c.LinkIndex)
				}
				d.CoveringDevs = append(d.CoveringDevs, dev)
			}
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("route decision for %s in netns %d: %w", q.Dst, ino, err)
	}
	return d, nil
}

func kernelLookup(h *netlink.Handle, q RouteQuery, fibMatch bool) (netlink.Route, error) {
	o := &netlink.RouteGetOptions{FIBMatch: fibMatch, Mark: q.Mark}
	if q.Iif > 0 {
		o.IifIndex = q.Iif
		if q.Src.IsValid() {
			o.SrcAddr = net.IP(q.Src.AsSlice())
		}
	}
	routes, err := h.RouteGetWithOptions(net.IP(q.Dst.AsSlice()), o)
	if err != nil {
		return netlink.Route{}, err
	}
	if len(routes) == 0 {
		return netlink.Route{}, errors.New("kernel returned no route")
	}
	return routes[0], nil
}

func fill(h *netlink.Handle, d *RouteDecision, rt netlink.Route) {
	d.Route = formatRoute(h, rt)
	d.Type = "unicast"
	if t, ok := routeTypes[rt.Type]; ok {
		d.Type = t
	}
	d.Prefix = prefixText(rt.Dst)
	d.Table = rt.Table
	if rt.LinkIndex > 0 {
		d.Dev = ifname(h, rt.LinkIndex)
		if l, err := h.LinkByIndex(rt.LinkIndex); err == nil {
			d.LinkMTU = l.Attrs().MTU
		}
	}
	if a, ok := netip.AddrFromSlice(rt.Gw); ok {
		d.Gw = a.Unmap()
	}
	d.RouteMTU, d.MTULock = rt.MTU, rt.MTULock
}

func prefixText(n *net.IPNet) string {
	switch ones, bits := maskSize(n); {
	case n == nil || ones == 0:
		return "default"
	case ones == bits:
		return n.IP.String()
	default:
		return n.String()
	}
}

func sameDst(a, b *net.IPNet) bool { return prefixText(a) == prefixText(b) }

// walkRules follows the policy rules in order as fib_rules_lookup does, looking each table up
// (longest prefix, then lowest metric) until one gives a route other than throw. It returns
// the route and the rule that chose its table (nil rule: only the default rules exist).
func walkRules(h *netlink.Handle, q RouteQuery) (*netlink.Route, *netlink.Rule, []netlink.Route, error) {
	fam := unix.AF_INET
	if q.Dst.Is6() {
		fam = unix.AF_INET6
	}
	rules, err := dump(func() ([]netlink.Rule, error) { return h.RuleList(fam) })
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ip rule: %w", err)
	}
	if actions, err := ruleActions(fam); err == nil && len(actions) == len(rules) {
		for i := range rules {
			rules[i].Type = actions[i]
		}
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
	iifName := ""
	if q.Iif > 0 {
		iifName = ifname(h, q.Iif)
	}
	tables := map[int][]netlink.Route{}
	for i := 0; i < len(rules); i++ {
		ru := &rules[i]
		if !ruleMatches(ru, q, iifName) {
			continue
		}
		switch {
		case ru.Goto > 0:
			for i+1 < len(rules) && rules[i+1].Priority < ru.Goto {
				i++
			}
			continue
		case ru.Type == unix.FR_ACT_NOP:
			continue
		case ruleActionErrno[ru.Type] != 0:
			// unreachable, prohibit, blackhole: the rule decides, no table is looked up.
			return nil, ru, nil, nil
		case ru.Table == 0:
			// An action this reading does not know (or the actions could not be read).
			return nil, ru, nil, errors.New("rule " + ruleText(ru) + " has an action other than lookup")
		}
		routes, ok := tables[ru.Table]
		if !ok {
			routes, err = dump(func() ([]netlink.Route, error) {
				return h.RouteListFiltered(fam, &netlink.Route{Table: ru.Table}, netlink.RT_FILTER_TABLE)
			})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("routes of table %d: %w", ru.Table, err)
			}
			tables[ru.Table] = routes
		}
		rt, covering := longestMatch(routes, q.Dst)
		if rt == nil || rt.Type == unix.RTN_THROW {
			continue
		}
		if ones, _ := maskSize(rt.Dst); ru.SuppressPrefixlen >= 0 && ones <= ru.SuppressPrefixlen {
			continue
		}
		return rt, ru, covering, nil
	}
	return nil, nil, nil, nil
}

// longestMatch is the table's route for dst and the other (unicast) routes that match it too.
func longestMatch(routes []netlink.Route, dst netip.Addr) (*netlink.Route, []netlink.Route) {
	var best *netlink.Route
	var all []*netlink.Route
	bestLen := -1
	for i := range routes {
		rt := &routes[i]
		p := netip.MustParsePrefix("0.0.0.0/0")
		if dst.Is6() {
			p = netip.MustParsePrefix("::/0")
		}
		if rt.Dst != nil {
			a, ok := netip.AddrFromSlice(rt.Dst.IP)
			if !ok {
				continue
			}
			ones, _ := rt.Dst.Mask.Size()
			p = netip.PrefixFrom(a.Unmap(), ones)
		}
		if p.Addr().Is6() != dst.Is6() || !p.Contains(dst) {
			continue
		}
		all = append(all, rt)
		if p.Bits() > bestLen || (p.Bits() == bestLen && rt.Priority < best.Priority) {
			best, bestLen = rt, p.Bits()
		}
	}
	var covering []netlink.Route
	for _, rt := range all {
		if rt != best && rt.Type == unix.RTN_UNICAST {
			covering = append(covering, *rt)
		}
	}
	return best, covering
}

func ruleMatches(ru *netlink.Rule, q RouteQuery, iif string) bool {
	m := true
	if ru.Src != nil && !ru.Src.Contains(net.IP(q.Src.AsSlice())) {
		m = false
	}
	if ru.Dst != nil && !ru.Dst.Contains(net.IP(q.Dst.AsSlice())) {
		m = false
	}
	if ru.IifName != "" && ru.IifName != iif && !(iif == "" && ru.IifName == "lo") {
		m = false
	}
	if ru.OifName != "" {
		m = false // an output lookup without a bound device does not match oif rules
	}
	if ru.Mark != 0 || ru.Mask != nil {
		mask := uint32(0xffffffff)
		if ru.Mask != nil {
			mask = *ru.Mask
		}
		if q.Mark&mask != ru.Mark {
			m = false
		}
	}
	if ru.Invert {
		m = !m
	}
	return m
}

func rulePref(ru *netlink.Rule) int {
	if ru == nil {
		return 0
	}
	return ru.Priority
}

// ruleText prints a rule as `ip rule` does ("100:	from 10.1.1.2 lookup 100", tab as a
// space); "" for nil and for the default rules to main and default.
func ruleText(ru *netlink.Rule) string {
	if ru == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d: ", ru.Priority)
	if ru.Invert {
		b.WriteString("not ")
	}
	if ru.Src != nil {
		b.WriteString("from " + prefixOrHost(ru.Src))
	} else {
		b.WriteString("from all")
	}
	if ru.Dst != nil {
		b.WriteString(" to " + prefixOrHost(ru.Dst))
	}
	if ru.Mark != 0 || ru.Mask != nil {
		fmt.Fprintf(&b, " fwmark %#x", ru.Mark)
		if ru.Mask != nil {
			fmt.Fprintf(&b, "/%#x", *ru.Mask)
		}
	}
	if ru.IifName != "" {
		b.WriteString(" iif " + ru.IifName)
	}
	if ru.OifName != "" {
		b.WriteString(" oif " + ru.OifName)
	}
	switch {
	case ru.Goto > 0:
		fmt.Fprintf(&b, " goto %d", ru.Goto)
	case ru.Table > 0:
		b.WriteString(" lookup " + TableName(ru.Table))
	case ruleActionNames[ru.Type] != "":
		b.WriteString(" " + ruleActionNames[ru.Type])
	}
	if ru.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", ru.SuppressPrefixlen)
	}
	return b.String()
}

func prefixOrHost(n *net.IPNet) string {
	if ones, bits := n.Mask.Size(); ones == bits {
		return n.IP.String()
	}
	return n.String()
}

// TableName is a routing table as `ip` names it.
func TableName(t int) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return fmt.Sprint(t)
}

// Policy rule actions (struct fib_rule_hdr's action, linux/fib_rules.h) that decide without a
// table, as `ip rule` prints them, and the error fib4_rule_action gives each.
var (
	ruleActionNames = map[uint8]string{unix.FR_ACT_UNREACHABLE: "unreachable", unix.FR_ACT_PROHIBIT: "prohibit", unix.FR_ACT_BLACKHOLE: "blackhole", unix.FR_ACT_NOP: "nop"}
	ruleActionErrno = map[uint8]unix.Errno{unix.FR_ACT_UNREACHABLE: unix.ENETUNREACH, unix.FR_ACT_PROHIBIT: unix.EACCES, unix.FR_ACT_BLACKHOLE: unix.EINVAL}
)

// ruleActions lists the policy rules' actions in the kernel's order, as RuleList lists the
// rules: this netlink library leaves the header's action byte out of its Rule. Run in the
// namespace (withNetlink), as the request's socket is made where the thread is.
func ruleActions(fam int) ([]uint8, error) {
	return dump(func() ([]uint8, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETRULE, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(fam))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWRULE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		out := make([]uint8, 0, len(msgs))
		for _, m := range msgs {
			if len(m) < 8 {
				return nil, errors.New("short fib_rule_hdr")
			}
			out = append(out, m[7]) // family, dst_len, src_len, tos, table, res1, res2, action
		}
		return out, err
	})
}
