// Package diagnose turns an assembled trace into a verdict: what happened to the flow, where,
// why, and what to change. It reads only the trace, so it is tested on recorded traces.
package diagnose

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// Verdict concludes a trace.
func Verdict(t *trace.Trace) trace.Verdict {
	if len(t.Packets) == 0 {
		return trace.Verdict{
			Outcome:    "no-packets",
			Summary:    fmt.Sprintf("no packet matched %s: check the addresses and that traffic was sent while tracing", t.Filter),
			Confidence: "high",
		}
	}
	if site, ok := worstDrop(t.Flows); ok {
		return dropVerdict(t, site)
	}
	var req, rep, leftHost, delivered, unknown, teardown int
	var leftOn, leftNetns string
	for _, p := range t.Packets {
		if p.Flow == trace.Reply {
			rep++
		} else {
			req++
		}
		switch p.Fate.Outcome {
		case trace.LeftHost:
			leftHost++
			leftOn, leftNetns = p.Fate.Ifname, p.Fate.NetnsName
		case trace.Delivered:
			delivered++
		case trace.Dropped:
			teardown++ // worstDrop found none but those of a closing socket
		default:
			unknown++
		}
	}
	switch {
	case req > 0 && rep > 0 && delivered+leftHost+teardown == len(t.Packets):
		v := trace.Verdict{
			Outcome:    "delivered",
			Summary:    fmt.Sprintf("healthy: %d request and %d reply packets, none dropped on this host", req, rep),
			Confidence: "high",
		}
		if teardown > 0 {
			v.Summary += fmt.Sprintf(" (%d freed from a closing socket's queue: normal at teardown)", teardown)
		}
		return v
	case req > 0 && rep > 0 && delivered > 0:
		return trace.Verdict{
			Outcome: "delivered",
			Summary: fmt.Sprintf("healthy: %d request and %d reply packets, none dropped on this host; %d still in flight or freed unseen when the trace stopped",
				req, rep, unknown),
			Confidence: "medium",
		}
	case leftHost > 0 && rep == 0:
		return trace.Verdict{
			Outcome:    "left-host",
			Cause:      "no reply",
			Summary:    fmt.Sprintf("not dropped on this host: the request left on %s (%s) and no reply came back while tracing", leftOn, leftNetns),
			Fix:        []string{"the loss is beyond this host: check the next hop, security groups/firewalls on the path and the remote peer"},
			Confidence: "medium",
		}
	case rep == 0:
		return trace.Verdict{
			Outcome:    "delivered",
			Summary:    fmt.Sprintf("%d request packets delivered on this host, none dropped; no reply seen while tracing", req),
			Confidence: "medium",
		}
	}
	return trace.Verdict{
		Outcome:    "unknown",
		Summary:    "no drop seen, but not every packet's end was seen before the trace stopped",
		Confidence: "low",
	}
}

// teardownReasons are drops the kernel reports when a socket closes with packets still queued:
// part of ending a connection, not a fault on the path.
var teardownReasons = map[string]bool{"QUEUE_PURGE": true, "SOCKET_CLOSE": true, "TCP_CLOSE": true}

// worstDrop picks the drop site to explain: the most frequent one that is not a teardown.
func worstDrop(flows []trace.FlowSummary) (trace.DropSite, bool) {
	var sites []trace.DropSite
	for _, f := range flows {
		for _, d := range f.Drops {
			if !teardownReasons[d.Reason] {
				sites = append(sites, d)
			}
		}
	}
	if len(sites) == 0 {
		return trace.DropSite{}, false
	}
	sort.SliceStable(sites, func(i, j int) bool { return sites[i].Count > sites[j].Count })
	return sites[0], true
}

func dropVerdict(t *trace.Trace, s trace.DropSite) trace.Verdict {
	where := s.NetnsName
	if s.Ifname != "" {
		where += " " + s.Ifname
	}
	v := trace.Verdict{
		Outcome:    "dropped",
		Cause:      s.Reason,
		Confidence: "high",
		Evidence: []trace.Evidence{
			{What: "drop reason", Value: s.Reason, Source: "skb:kfree_skb"},
			{What: "drop location", Value: s.Location, Source: "skb:kfree_skb + /proc/kallsyms"},
		},
	}
	if s.Reason == "" {
		v.Cause = "dropped"
		v.Confidence = "medium"
	}
	v.Summary = fmt.Sprintf("the %s was dropped in %s at %s", s.Flow, where, s.Location)
	if s.Reason != "" {
		v.Summary += ": " + s.Reason
	}
	if e, ok := explain(s); ok {
		v.Cause = e.cause
		v.Summary += " — " + e.meaning
		v.Fix = e.fix
	}
	return v
}

type explanation struct {
	cause   string
	meaning string
	fix     []string
}

// explain says in plain words what the commonest drops mean on a node.
func explain(s trace.DropSite) (explanation, bool) {
	fn := s.Location
	if i := strings.IndexByte(fn, '+'); i >= 0 {
		fn = fn[:i]
	}
	switch {
	case s.Reason == "IP_INADDRERRORS" && fn == "ip_error":
		return explanation{
			cause:   "forwarding disabled or no route",
			meaning: fmt.Sprintf("the kernel would not forward it: IPv4 forwarding is off for the input device %s (net.ipv4.ip_forward or net.ipv4.conf.%s.forwarding is 0), or the destination is unreachable", s.Ifname, s.Ifname),
			fix: []string{
				"sysctl -w net.ipv4.ip_forward=1",
				fmt.Sprintf("sysctl -w net.ipv4.conf.%s.forwarding=1", s.Ifname),
				"persist it in /etc/sysctl.d/ so a network restart does not turn it off again",
			},
		}, true
	case s.Reason == "NETFILTER_DROP":
		return explanation{
			cause:   "netfilter rule",
			meaning: "a netfilter (iptables/nftables) rule dropped it",
			fix:     []string{"find the rule: nft list ruleset / iptables-save, in the namespace where it was dropped"},
		}, true
	case s.Reason == "NO_SOCKET":
		return explanation{
			cause:   "no socket",
			meaning: "it reached its destination but nothing listens on that port there",
			fix:     []string{"check that the service is running and listening on the destination address and port"},
		}, true
	case s.Reason == "TC_INGRESS" || s.Reason == "TC_EGRESS" || strings.HasPrefix(fn, "tcf_") || strings.HasPrefix(fn, "sch_handle_"):
		return explanation{
			cause:   "tc/BPF program",
			meaning: fmt.Sprintf("a tc classifier or BPF program on %s dropped it (on Kubernetes often the CNI's policy program)", s.Ifname),
			fix:     []string{fmt.Sprintf("list the programs: tc filter show dev %s ingress; tc filter show dev %s egress", s.Ifname, s.Ifname)},
		}, true
	}
	return explanation{}, false
}
