package diagnose

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pathtrace/pathtrace/trace"
)

// neighFake is a node for the neighbour classes: fakeFacts plus the route decision, links and
// the addresses of the node's namespaces.
type neighFake struct {
	fakeFacts
	nextHop   NextHop
	routeErr  error
	link      LinkState
	owners    []AddrOwner
	ownersOf  map[netip.Addr][]AddrOwner // when set, the owners of each address (else owners)
	backRoute string                     // when set, the peer namespace's route as ip route prints it
	peerNS    map[string]string          // sysctls of the peer's namespace (the node)
}

const podNS, peerNS = 4026532100, 4026532246

func (f neighFake) Sysctl(netns uint32, key string) (string, error) {
	if netns == peerNS {
		if v, ok := f.peerNS[key]; ok {
			return v, nil
		}
		return "", errors.New("no such sysctl")
	}
	return f.fakeFacts.Sysctl(netns, key)
}

func (f neighFake) NextHop(netns uint32, _, dst netip.Addr) (NextHop, error) {
	if netns == peerNS {
		return NextHop{Route: orDefault(f.backRoute, "default via 10.0.2.2 dev veth-ext"), Dev: "veth-ext", Addr: dst}, f.routeErr
	}
	return f.nextHop, nil
}
func (f neighFake) Link(uint32, string) (LinkState, error) { return f.link, nil }
func (f neighFake) AddrOwners(a netip.Addr) []AddrOwner {
	if f.ownersOf != nil {
		return f.ownersOf[a]
	}
	return f.owners
}

var calicoGW = netip.MustParseAddr("169.254.1.1")

// calicoNode: the pod's default via 169.254.1.1 dev eth0 onlink, answered only by proxy ARP on
// the node's veth-pod.
func calicoNode(forward string) neighFake {
	return neighFake{
		fakeFacts: fakeFacts{neigh: "INCOMPLETE", sysctl: map[string]string{
			"net.ipv4.neigh.eth0.mcast_solicit": "3", "net.ipv4.neigh.eth0.app_solicit": "0", "net.ipv4.neigh.eth0.retrans_time_ms": "1000",
		}},
		nextHop: NextHop{Route: "default via 169.254.1.1 dev eth0 onlink", Gateway: calicoGW, Addr: calicoGW, Dev: "eth0", Onlink: true},
		link:    LinkState{Kind: "veth", Up: true, LowerUp: true, PeerNetns: peerNS, PeerNetnsName: "node", PeerIfname: "veth-pod", PeerUp: true, PeerLowerUp: true},
		peerNS: map[string]string{
			"net.ipv4.conf.all.proxy_arp": "0", "net.ipv4.conf.veth-pod.proxy_arp": "1",
			"net.ipv4.ip_forward": forward, "net.ipv4.conf.veth-pod.forwarding": forward,
		},
	}
}

// probeOnly is a request known only by the ARP probe's copy the pod's neighbour code freed,
// as the assembly hands it out: its end unknown, waiting.
func probeOnly() trace.Packet {
	h := icmp(podIP, extIP)
	place := trace.Place{Netns: podNS, NetnsName: "pod", Ifname: "eth0"}
	return trace.Packet{
		Flow: trace.Request, Tuple: *h,
		Hops: []trace.Hop{{Event: trace.KindConsume, Place: place, Tuple: h, Location: "__neigh_event_send+0x236", Copy: true}},
		Fate: trace.Fate{Outcome: trace.Unknown, Place: place, Note: "waiting for its next hop's address (ARP/NDP): only the neighbour code's copy for the probe was seen, freed at __neigh_event_send+0x236"},
	}
}

// podDrop is a request the pod's neighbour code dropped when its entry failed (the original,
// never seen before: no route hop).
func podDrop(reason, loc string) trace.Packet {
	h := icmp(podIP, extIP)
	place := trace.Place{Netns: podNS, NetnsName: "pod", Ifname: "eth0"}
	return trace.Packet{
		Flow: trace.Request, Tuple: *h,
		Hops: []trace.Hop{{Event: trace.KindDrop, Place: place, Tuple: h, Reason: reason, Location: loc}},
		Fate: trace.Fate{Outcome: trace.Dropped, Reason: reason, Location: loc, Place: place},
	}
}

func evidenceText(v trace.Verdict) string {
	var ev []string
	for _, e := range v.Evidence {
		ev = append(ev, e.What+"="+e.Value)
	}
	return strings.Join(ev, "\n")
}

func wantVerdict(t *testing.T, v trace.Verdict, outcome, class string, cause, summary, evidence, fix []string) {
	t.Helper()
	if v.Outcome != outcome || v.Class != class {
		t.Errorf("verdict %s/%s, want %s/%s: %s", v.Outcome, v.Class, outcome, class, v.Summary)
	}
	for _, s := range cause {
		if !strings.Contains(v.Cause, s) {
			t.Errorf("cause %q lacks %q", v.Cause, s)
		}
	}
	for _, s := range summary {
		if !strings.Contains(v.Summary, s) {
			t.Errorf("summary %q lacks %q", v.Summary, s)
		}
	}
	for _, s := range evidence {
		if !strings.Contains(evidenceText(v), s) {
			t.Errorf("evidence %q lacks %q", evidenceText(v), s)
		}
	}
	for _, s := range fix {
		if !strings.Contains(strings.Join(v.Fix, "\n"), s) {
			t.Errorf("fix %q lacks %q", v.Fix, s)
		}
	}
}

// Incidents 000/003 in their real form: the request waits for ARP of the Calico gateway, which
// proxy ARP on the node's veth does not answer while the node does not forward.
func TestNeighbourWaitingCalico(t *testing.T) {
	v := verdictOf(calicoNode("0"), nil, probeOnly(), probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting",
		[]string{"waiting for ARP of 169.254.1.1 on eth0", "forwarding is off in node (net.ipv4.ip_forward=0)"},
		[]string{"2 request packet(s)", "waiting for ARP of the next hop 169.254.1.1", "route default via 169.254.1.1 dev eth0 onlink", "stopped before the entry failed (it is INCOMPLETE now)", "it fails after 3 unanswered probes 1000 ms apart (~3000 ms"},
		[]string{"next hop=169.254.1.1, the gateway, on eth0", "neighbour entry=169.254.1.1 on eth0: INCOMPLETE", "net.ipv4.conf.veth-pod.proxy_arp=1", "net.ipv4.ip_forward=0"},
		[]string{"ip netns exec node sysctl -w net.ipv4.ip_forward=1", "ip netns exec pod ip neigh show 169.254.1.1 dev eth0"})
	if v.Confidence != "high" {
		t.Errorf("confidence %q", v.Confidence)
	}
	if strings.Contains(v.Summary, "delivered on") || strings.Contains(v.Summary, "healthy") {
		t.Errorf("a queued packet called delivered: %s", v.Summary)
	}
}

// The entry failed: the drop names the gateway the route chose, never the destination.
func TestNeighbourFailedNamesGateway(t *testing.T) {
	f := calicoNode("0")
	f.neigh = "FAILED"
	v := verdictOf(f, nil, podDrop("NEIGH_FAILED", "neigh_invalidate+0x7e"))
	wantVerdict(t, v, "dropped", "neighbour",
		[]string{"next hop 169.254.1.1 not resolved", "forwarding is off"},
		[]string{"no ARP answer for the next hop 169.254.1.1 on eth0", "route: default via 169.254.1.1 dev eth0 onlink"},
		[]string{"neighbour entry=169.254.1.1 on eth0: FAILED"},
		[]string{"ip netns exec node sysctl -w net.ipv4.ip_forward=1"})
	if strings.Contains(v.Cause, extIP.String()) {
		t.Errorf("cause names the destination: %s", v.Cause)
	}
}

// Forwarding on but the node routes the gateway back out the veth: proxy ARP stays silent.
func TestNeighbourProxyRoutesBack(t *testing.T) {
	f := calicoNode("1")
	f.routeErr = errors.New("unreachable")
	v := verdictOf(f, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting", []string{"node has no route to 169.254.1.1"}, nil, nil, []string{"ip netns exec node ip route get 169.254.1.1"})
}

func TestNeighbourPeerDown(t *testing.T) {
	f := calicoNode("1")
	f.link.LowerUp, f.link.PeerUp, f.link.PeerLowerUp = false, false, false
	v := verdictOf(f, nil, podDrop("QUEUE_PURGE", "neigh_destroy+0x89"))
	wantVerdict(t, v, "dropped", "neighbour",
		[]string{"destroyed with the packets queued", "the peer of eth0, veth-pod in node, is down"}, nil,
		[]string{"peer of eth0=veth-pod in node: down (veth)", "link eth0=up, no carrier (veth)"},
		[]string{"ip netns exec node ip link set veth-pod up"})
}

func TestNeighbourArpIgnore(t *testing.T) {
	f := calicoNode("1")
	f.owners = []AddrOwner{{Netns: peerNS, NetnsName: "node", Dev: "lo"}}
	f.peerNS["net.ipv4.conf.all.arp_ignore"] = "1"
	f.peerNS["net.ipv4.conf.veth-pod.arp_ignore"] = "0"
	v := verdictOf(f, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting", []string{"arp_ignore=1 on veth-pod in node: 169.254.1.1 is on lo, not on veth-pod"}, nil,
		[]string{"169.254.1.1 configured on=lo in node", "net.ipv4.conf.all.arp_ignore=1"},
		[]string{"ip netns exec node sysctl -w net.ipv4.conf.all.arp_ignore=0"})

	f.peerNS["net.ipv4.conf.all.arp_ignore"] = "8"
	v = verdictOf(f, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting", []string{"arp_ignore=8 on veth-pod"}, nil, nil, nil)
}

// The node answers proxy ARP for the gateway, but its strict reverse-path filter refuses the
// requests themselves: the route back to the pod leaves by veth-ext. Then the sender is the
// node's own address (a duplicate): accept_local=0 refuses them.
func TestNeighbourRequestRefused(t *testing.T) {
	f := calicoNode("1")
	f.ownersOf = map[netip.Addr][]AddrOwner{podIP: {{Netns: podNS, NetnsName: "pod", Dev: "eth0"}}}
	f.sysctl["net.ipv4.conf.all.arp_announce"] = "0"
	f.peerNS["net.ipv4.conf.all.rp_filter"] = "1"
	f.peerNS["net.ipv4.conf.veth-pod.rp_filter"] = "0"
	v := verdictOf(f, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting",
		[]string{"reverse-path filter (strict) on veth-pod in node: its route back to " + podIP.String() + " leaves by veth-ext"},
		[]string{"no drop is traced"},
		[]string{"ARP requests' sender address=" + podIP.String(), "effective rp_filter on veth-pod=1 (strict)", "route back to " + podIP.String() + " in node=default via 10.0.2.2 dev veth-ext"},
		[]string{"ip netns exec node sysctl -w net.ipv4.conf.all.rp_filter=2"})
	if strings.Contains(strings.Join(v.Fix, " "), "veth-pod.rp_filter=2") {
		t.Errorf("fix lowers a device value that is not strict: %q", v.Fix)
	}

	// A multipath route back with a path by veth-pod: strict mode accepts it.
	mp := f
	mp.backRoute = "10.0.1.2 proto static nexthop via 10.0.2.2 dev veth-ext weight 1 nexthop dev veth-pod weight 1"
	if v := verdictOf(mp, nil, probeOnly()); strings.Contains(v.Cause, "reverse-path") {
		t.Errorf("a multipath route back with a path by veth-pod blamed: %s", v.Cause)
	}

	// Loose mode with a route back: the requests pass; proxy ARP is then what is examined.
	f.peerNS["net.ipv4.conf.all.rp_filter"] = "2"
	v = verdictOf(f, nil, probeOnly())
	if strings.Contains(v.Cause, "reverse-path") {
		t.Errorf("loose mode with a route back blamed: %s", v.Cause)
	}

	f.peerNS["net.ipv4.conf.all.rp_filter"] = "0"
	f.ownersOf[podIP] = append(f.ownersOf[podIP], AddrOwner{Netns: peerNS, NetnsName: "node", Dev: "lo"})
	f.peerNS["net.ipv4.conf.all.accept_local"] = "0"
	f.peerNS["net.ipv4.conf.veth-pod.accept_local"] = "0"
	v = verdictOf(f, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting",
		[]string{"an address node itself has (on lo)", "accept_local=0"}, nil, nil,
		[]string{"ip netns exec node ip addr del " + podIP.String() + " dev lo"})
}

// A gateway beyond a real uplink: nothing on this node to follow, the gateway is named.
func TestNeighbourUplinkGateway(t *testing.T) {
	gw := netip.MustParseAddr("192.168.1.1")
	f := neighFake{
		fakeFacts: fakeFacts{neigh: "FAILED"},
		nextHop:   NextHop{Route: "default via 192.168.1.1 dev eth0", Gateway: gw, Addr: gw, Dev: "eth0"},
		link:      LinkState{Kind: "device", Up: true, LowerUp: true},
	}
	v := verdictOf(f, nil, podDrop("NEIGH_FAILED", "neigh_invalidate+0x7e"))
	wantVerdict(t, v, "dropped", "neighbour", []string{"next hop 192.168.1.1 not resolved: the gateway does not answer ARP"},
		[]string{"beyond this host"}, []string{"route decision=default via 192.168.1.1 dev eth0"}, []string{"arping -c 3 -I eth0 192.168.1.1"})
}

// A replay has no node state: the next hop is not guessed as the destination, and the verdict
// says how to find it.
func TestNeighbourReplay(t *testing.T) {
	v := verdictOf(nil, nil, probeOnly())
	wantVerdict(t, v, "unknown", "neighbour-waiting", []string{"waiting for ARP of (the gateway of the route to 10.0.2.2)"},
		[]string{"the trace stopped before the entry failed or resolved"}, nil, []string{"ip netns exec pod ip route get 10.0.2.2"})
	if v.Confidence != "low" {
		t.Errorf("confidence %q, want low", v.Confidence)
	}
	v = verdictOf(nil, nil, podDrop("NEIGH_FAILED", "neigh_invalidate+0x7e"))
	if strings.Contains(v.Cause, "next hop 10.0.2.2") {
		t.Errorf("replay took the destination for the next hop: %s", v.Cause)
	}
}

// Facts without the neighbour classes' reading (an older Facts): the trace's route lookup names
// the next hop.
func TestNeighbourFromTraceRoute(t *testing.T) {
	p := dropped(trace.Request, "veth-ext", "NEIGH_FAILED", "neigh_invalidate+0x7e", icmp(podIP, extIP))
	p.Hops[1].Route.Gateway = netip.MustParseAddr("10.0.2.254")
	v := verdictOf(fakeFacts{neigh: "FAILED"}, nil, p)
	wantVerdict(t, v, "dropped", "neighbour", []string{"next hop 10.0.2.254 not resolved"}, nil,
		[]string{"next hop=10.0.2.254, the gateway, on veth-ext", "neighbour entry=10.0.2.254 on veth-ext: FAILED"}, []string{"ip netns exec node ip neigh show 10.0.2.254 dev veth-ext"})
}

// A queued request is never delivered, nor a flow with one healthy; after a reply came, a
// packet waiting earlier does not make the flow's verdict.
func TestNeighbourWaitingNotHealthy(t *testing.T) {
	rep := icmp(extIP, podIP)
	replied := trace.Packet{Flow: trace.Reply, Tuple: *rep,
		Hops: []trace.Hop{{TimeNS: 5e9, Event: trace.KindConsume, Place: trace.Place{Netns: podNS, NetnsName: "pod", Ifname: "eth0"}, Tuple: rep, Location: "raw_recvmsg+0xac"}},
		Fate: trace.Fate{Outcome: trace.Delivered, Location: "raw_recvmsg+0xac"}}
	v := verdictOf(nil, nil, probeOnly(), replied)
	if v.Class == "neighbour-waiting" {
		t.Errorf("a wait answered later made the verdict: %s", v.Summary)
	}
	v = verdictOf(nil, nil, probeOnly())
	if v.Outcome == "delivered" {
		t.Errorf("a queued packet delivered: %s", v.Summary)
	}
}

// A connection whose segments keep being resent after the last reply is not healthy.
func TestResentUnansweredNotHealthy(t *testing.T) {
	tcp := func(src, dst netip.Addr) *trace.Headers {
		return &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoTCP, Src: src, Dst: dst, Sport: 40000, Dport: 80}, Payload: 10}
	}
	at := func(dir trace.Direction, h *trace.Headers, ns uint64, retrans int) trace.Packet {
		place := trace.Place{Netns: podNS, NetnsName: "pod", Ifname: "eth0"}
		return trace.Packet{ID: int(ns), Flow: dir, Tuple: *h, RetransmitOf: retrans,
			Hops: []trace.Hop{{TimeNS: ns, Event: trace.KindXmit, Place: place, Tuple: h}},
			Fate: trace.Fate{Outcome: trace.LeftHost, Place: place}}
	}
	req, rep := tcp(podIP, extIP), tcp(extIP, podIP)
	replied := at(trace.Reply, rep, 2e9, 0)
	replied.Fate = trace.Fate{Outcome: trace.Delivered, Location: "tcp_rcv_established+0x1"}
	v := verdictOf(nil, nil, at(trace.Request, req, 1e9, 0), replied, at(trace.Request, req, 3e9, 0), at(trace.Request, req, 4e9, 3e9), at(trace.Request, req, 6e9, 3e9))
	if v.Class != "resent-unanswered" || strings.Contains(v.Summary, "healthy:") || v.Outcome == "delivered" {
		t.Errorf("verdict %s/%s: %s", v.Outcome, v.Class, v.Summary)
	}
	if !strings.Contains(v.Summary, "2 request segment(s) resent after the last reply") {
		t.Errorf("summary %q", v.Summary)
	}
	// Resent before the reply that answered it: healthy.
	v = verdictOf(nil, nil, at(trace.Request, req, 1e9, 0), at(trace.Request, req, 1.5e9, 1e9), replied)
	if v.Class != "healthy" {
		t.Errorf("verdict %s/%s: %s", v.Outcome, v.Class, v.Summary)
	}
}

// IPv6 frees the packets of a failed entry with kfree_skb (NOT_SPECIFIED, from
// ndisc_error_report inlined in neigh_invalidate): still the neighbour's failure, and a gateway
// that is the destination itself is still called the gateway.
func TestNeighbourV6NotSpecified(t *testing.T) {
	gw := netip.MustParseAddr("fd00::99")
	f := calicoNode("1")
	f.nextHop = NextHop{Route: "default via fd00::99 dev eth0", Gateway: gw, Addr: gw, Dev: "eth0"}
	f.neigh = "FAILED"
	f.peerNS["net.ipv6.conf.veth-pod.proxy_ndp"] = "0"
	p := podDrop("NOT_SPECIFIED", "neigh_invalidate+0x7e")
	h := &trace.Headers{Tuple: trace.Tuple{Proto: trace.ProtoICMPv6, Src: netip.MustParseAddr("fd00::2"), Dst: gw}}
	p.Tuple, p.Hops[0].Tuple = *h, h
	v := verdictOf(f, nil, p)
	wantVerdict(t, v, "dropped", "neighbour", []string{"next hop fd00::99 not resolved: nothing on this node has fd00::99"},
		[]string{"no NDP answer for the next hop fd00::99"}, []string{"next hop=fd00::99, the gateway, on eth0", "net.ipv6.conf.veth-pod.proxy_ndp"}, []string{"ip -6 route"})
	if strings.Contains(v.Cause, "destroyed") {
		t.Errorf("a failed entry told as destroyed: %s", v.Cause)
	}
}

// Before 6.3 consume_skb does not say where: the probe's copy is a lone unplaced consume. The
// waiting verdict then rests on the neighbour entry read live, says so, and is never reached
// when the entry resolved.
func TestNeighbourWaitingUnplaced(t *testing.T) {
	unplaced := func() trace.Packet {
		p := probeOnly()
		p.Hops[0].Location = ""
		p.Hops[0].Place.Ifname = ""
		p.Fate.Note = "only freed where it was made, never sent or received: waiting for its next hop's address (ARP/NDP), it seems (this kernel does not say where packets are freed)"
		return p
	}
	v := verdictOf(calicoNode("0"), nil, unplaced())
	wantVerdict(t, v, "unknown", "neighbour-waiting",
		[]string{"waiting for ARP of 169.254.1.1 on eth0", "forwarding is off in node"},
		[]string{"1 request packet(s)", "a place this kernel does not report"},
		[]string{"neighbour entry=169.254.1.1 on eth0: INCOMPLETE"},
		[]string{"ip netns exec node sysctl -w net.ipv4.ip_forward=1"})
	if v.Confidence == "high" || len(v.Unknown) == 0 || !strings.Contains(v.Unknown[0].What, "consume_skb has no location") {
		t.Errorf("confidence %s, unknown %+v: the verdict must say what rests on the neighbour entry alone", v.Confidence, v.Unknown)
	}
	resolved := calicoNode("1")
	resolved.neigh = "REACHABLE"
	if v := verdictOf(resolved, nil, unplaced()); v.Class == "neighbour-waiting" || v.Outcome == "delivered" {
		t.Errorf("an unplaced free with the entry REACHABLE: %s/%s %s", v.Outcome, v.Class, v.Summary)
	}
}
