package diagnose

import "strings"

// reasonText says in plain words what a drop reason means. The kernel's enum grows with every
// release; names missing here are explained from the name itself (see Explain).
var reasonText = map[string]string{
	"NOT_SPECIFIED":            "freed as a drop without a specific reason: the location says where",
	"NO_SOCKET":                "it reached its destination but no socket was bound to that address and port",
	"SOCKET_CLOSE":             "its socket was closed while it was queued",
	"SOCKET_FILTER":            "a socket filter (SO_ATTACH_FILTER/BPF) rejected it",
	"SOCKET_RCVBUFF":           "the receiving socket's buffer was full (the application does not read fast enough)",
	"SOCKET_BACKLOG":           "the socket's backlog was full",
	"PKT_TOO_SMALL":            "it was shorter than its headers say",
	"TCP_CSUM":                 "its TCP checksum was wrong",
	"UDP_CSUM":                 "its UDP checksum was wrong",
	"ICMP_CSUM":                "its ICMP checksum was wrong",
	"IP_CSUM":                  "its IP header checksum was wrong",
	"SKB_CSUM":                 "its checksum could not be verified",
	"NETFILTER_DROP":           "a netfilter rule (nftables or iptables) dropped it",
	"OTHERHOST":                "it was addressed to another host's MAC (seen because of flooding or promiscuous mode)",
	"IP_INHDR":                 "its IP header was invalid",
	"IP_RPFILTER":              "the reverse-path filter (rp_filter) rejected it: the route back to its source does not go out the device it came in on",
	"UNICAST_IN_L2_MULTICAST":  "an IP unicast packet arrived in a link-layer multicast or broadcast frame",
	"XFRM_POLICY":              "an IPsec (xfrm) policy rejected it",
	"IP_NOPROTO":               "no handler for its IP protocol on this host",
	"PROTO_MEM":                "the protocol's memory limit was reached",
	"TCP_FLAGS":                "its TCP flags were invalid for the connection's state",
	"TCP_ZEROWINDOW":           "the receiver's TCP window was zero",
	"TCP_OLD_DATA":             "it carried TCP data already received (a duplicate)",
	"TCP_OVERWINDOW":           "its TCP data was beyond the receive window",
	"TCP_OFOMERGE":             "its out-of-order TCP data overlapped data already queued",
	"TCP_LISTEN_OVERFLOW":      "the listening socket's accept queue was full",
	"TCP_OLD_SEQUENCE":         "its TCP sequence number was old",
	"TCP_INVALID_SEQUENCE":     "its TCP sequence number was not acceptable",
	"TCP_RESET":                "it was a TCP reset",
	"TCP_INVALID_SYN":          "an unexpected TCP SYN for an existing connection",
	"TCP_CLOSE":                "its TCP connection was closed",
	"TCP_OLD_ACK":              "its TCP acknowledgement was old",
	"TCP_TOO_OLD_ACK":          "its TCP acknowledgement was too old",
	"TCP_OFO_DROP":             "out-of-order TCP data could not be queued",
	"IP_OUTNOROUTES":           "no route for it on output",
	"IP_INNOROUTES":            "no route for it on input",
	"IP_INADDRERRORS":          "the kernel would not route it: forwarding is disabled where it came in, or the destination is unreachable",
	"IP_LOCAL_SOURCE":          "its source address is one of this host's own",
	"IP_INVALID_SOURCE":        "its source address is invalid (martian)",
	"IP_LOCALNET":              "its address is in 127.0.0.0/8 but it did not arrive on loopback",
	"IP_INVALID_DEST":          "its destination address is invalid",
	"BPF_CGROUP_EGRESS":        "a cgroup BPF program on the sending socket's cgroup dropped it",
	"IPV6DISABLED":             "IPv6 is disabled on the device",
	"NEIGH_CREATEFAIL":         "no neighbour (ARP/NDP) entry could be created for the next hop",
	"NEIGH_FAILED":             "the next hop's address could not be resolved (ARP/NDP failed)",
	"NEIGH_QUEUEFULL":          "too many packets were waiting for the next hop's address resolution",
	"NEIGH_DEAD":               "the next hop's neighbour entry was removed",
	"TC_EGRESS":                "a tc program or filter on the device's egress dropped it",
	"TC_INGRESS":               "a tc program or filter on the device's ingress dropped it",
	"TC_CHAIN_NOTFOUND":        "a tc filter jumped to a chain that does not exist",
	"TC_RECLASSIFY_LOOP":       "tc reclassified it too many times",
	"QDISC_DROP":               "the device's queueing discipline dropped it (queue full)",
	"QDISC_OVERLIMIT":          "the queueing discipline's limit was exceeded",
	"CPU_BACKLOG":              "the CPU's receive backlog was full (netdev_max_backlog)",
	"XDP":                      "an XDP program dropped it",
	"UNHANDLED_PROTO":          "no handler for its protocol",
	"DEV_READY":                "the device was not up or not ready",
	"FULL_RING":                "the device's ring was full",
	"NOMEM":                    "memory allocation failed",
	"HDR_TRUNC":                "its headers were truncated",
	"PKT_TOO_BIG":              "it was bigger than the path MTU and could not be fragmented",
	"QUEUE_PURGE":              "its socket's queue was purged as the socket closed (normal at teardown)",
	"VXLAN_INVALID_HDR":        "its VXLAN header was invalid",
	"VXLAN_VNI_NOT_FOUND":      "no VXLAN device for its VNI",
	"MAC_INVALID_SOURCE":       "its source MAC was invalid",
	"NO_TX_TARGET":             "no device to transmit it on",
	"TUNNEL_TXINFO":            "tunnel metadata for transmit was missing",
	"LOCAL_MAC":                "its source MAC is this device's own",
	"BRIDGE_INGRESS_STP_STATE": "the bridge port's STP state does not allow it in",
	"RECURSION_LIMIT":          "too many nested transmissions (a loop of devices)",
}

// Explain says what a drop reason means, for every name the kernel reports.
func Explain(reason string) string {
	if t, ok := reasonText[reason]; ok {
		return t
	}
	if reason == "" {
		return "freed as a drop (this kernel reports no reason)"
	}
	// The enum's names are the kernel's own short descriptions: spell them out.
	words := strings.Split(strings.ToLower(reason), "_")
	return "the kernel's drop reason " + reason + " (" + strings.Join(words, " ") + ")"
}
