package diagnose

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

// Socket is a socket bound to a port in a namespace, as `ss -lunp -m` (or -ltnp) shows it.
type Socket struct {
	Proto, State string
	Local        netip.AddrPort
	// RecvQ: bytes queued (UDP) or connections waiting to be accepted (listener); SendQ: a
	// listener's backlog.
	RecvQ, SendQ             uint32
	RmemAlloc, Rcvbuf, Drops uint32
	HasMem                   bool
	Procs                    []string // "name(pid)"
}

// socketFacts reads the sockets bound to a port (an optional Facts extension).
type socketFacts interface {
	SocketsOn(netns uint32, proto string, port uint16) ([]Socket, error)
}

// String is the socket as ss prints it, with its owners.
func (s Socket) String() string {
	local := s.Local.String()
	if !s.Local.Addr().IsValid() || s.Local.Addr().IsUnspecified() {
		local = fmt.Sprintf("*:%d", s.Local.Port()) // as ss prints a wildcard (dual-stack for IPv6)
	}
	v := fmt.Sprintf("%s %s %s", s.Proto, s.State, local)
	if len(s.Procs) > 0 {
		v += " users:" + strings.Join(s.Procs, ",")
	}
	return v
}

var _ = register(Class{
	Name:       "no-socket",
	Order:      80,
	Recognises: "`NO_SOCKET`",
	Reads:      "the sockets bound to the port in that namespace (`ss`), the replies the trace saw (the RST or ICMP port unreachable); a VXLAN/Geneve packet: the namespace's VXLAN devices",
	Fix:        "the listening service (`ss -ltnp`/`-lunp` in that namespace); for an overlay packet, the VXLAN device and its port",
	Drop: func(s *trace.DropSite, fn string) bool {
		return s.Reason == "NO_SOCKET" || (noReason(s.Reason) && transportRcv[fn])
	},
	Explain: (*Diagnoser).noSocket,
})

// transportRcv are where a kernel without drop reasons (before 5.17) frees a packet no socket
// takes; it frees packets with a bad checksum there too.
var transportRcv = map[string]bool{"tcp_v4_rcv": true, "tcp_v6_rcv": true, "__udp4_lib_rcv": true, "__udp6_lib_rcv": true}

func (d *Diagnoser) noSocket(f *finding) {
	if noReason(f.site.Reason) {
		d.noSocketInferred(f)
		return
	}
	hop := f.dropHop()
	if hop.Encap != "" && hop.Outer != nil {
		d.noOverlaySocket(f, hop)
		return
	}
	h := f.headers()
	ns := f.site.NetnsName
	f.sure = true
	switch h.Proto {
	case trace.ProtoTCP:
		f.cause = fmt.Sprintf("connection refused: nothing listens on TCP port %d in %s", h.Dport, ns)
		f.meaning = fmt.Sprintf("it reached %s but nothing listens on %s there: connection refused", f.site.Area(), netip.AddrPortFrom(h.Dst, h.Dport))
		f.fix = []string{inNetns(ns, fmt.Sprintf("ss -ltnp 'sport = :%d'   # nothing on %s: start the service, or point the client at the port it listens on (for a Service: its endpoints and targetPort)", h.Dport, netip.AddrPortFrom(h.Dst, h.Dport)))}
		f.late = (*Diagnoser).refusedReply
	case trace.ProtoUDP:
		icmp := "ICMP"
		if h.Dst.Is6() {
			icmp = "ICMPv6"
		}
		f.cause = fmt.Sprintf("port unreachable: nothing listens on UDP port %d in %s", h.Dport, ns)
		f.meaning = fmt.Sprintf("it reached %s but nothing listens on %s there: the kernel answers with an %s port unreachable (rate-limited), which a connected UDP socket reports as ECONNREFUSED", f.site.Area(), netip.AddrPortFrom(h.Dst, h.Dport), icmp)
		f.fix = []string{inNetns(ns, fmt.Sprintf("ss -lunp 'sport = :%d'   # nothing on %s: start the service, or point the client at the port it listens on (for a Service: its endpoints and targetPort)", h.Dport, netip.AddrPortFrom(h.Dst, h.Dport)))}
	default:
		f.cause = "nothing listening"
		f.meaning = fmt.Sprintf("it reached %s but no socket there takes %s", f.site.Area(), h.Proto)
		f.fix = []string{"check that a service there takes " + h.Proto.String()}
		return
	}
	if d.facts == nil {
		return
	}
	sf, ok := d.facts.(socketFacts)
	if !ok {
		return
	}
	socks, err := sf.SocketsOn(f.site.Netns, h.Proto.String(), h.Dport)
	what := fmt.Sprintf("%s sockets on port %d in %s", strings.ToUpper(h.Proto.String()), h.Dport, ns)
	switch {
	case err != nil:
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: err.Error(), Source: "read failed"})
	case len(socks) == 0:
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: "none", Source: "sock_diag (ss) in netns " + ns})
	default:
		// Something is bound to the port, but not to this address or family: the service
		// listens on the wrong address (127.0.0.1 only, IPv6 only...), or it came up since.
		var l []string
		for _, s := range socks {
			l = append(l, s.String())
		}
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: strings.Join(l, "; "), Source: "sock_diag (ss) in netns " + ns})
		f.meaning += fmt.Sprintf(". A socket is bound to port %d now, but not for %s: it listens on another address or family (%s), or it started after the drop", h.Dport, h.Dst, strings.Join(l, "; "))
		f.sure = false
	}
}

// refusedReply says whether the trace saw the RST that answers a SYN to a closed port.
func (d *Diagnoser) refusedReply(f *finding) {
	d.mu.Lock()
	rep := d.tally.rep
	d.mu.Unlock()
	if rep > 0 {
		f.meaning += fmt.Sprintf("; a RST was sent back (%d reply packets traced)", rep)
	} else {
		f.meaning += "; the kernel answers a SYN there with a RST, but this trace saw no reply"
	}
}

// vxlanFacts lists a namespace's VXLAN devices with their VNI (an optional Facts extension).
type vxlanFacts interface {
	VXLANs(netns uint32) ([]VXLANDevice, error)
}

// VXLANDevice is a VXLAN device: its VNI, UDP port and underlay device.
type VXLANDevice struct {
	Name, Underlay string
	VNI            uint32
	Port           uint16
	Up             bool
}

func (v VXLANDevice) String() string {
	s := fmt.Sprintf("%s (VNI %d, port %d", v.Name, v.VNI, v.Port)
	if v.Underlay != "" {
		s += ", dev " + v.Underlay
	}
	if !v.Up {
		s += ", down"
	}
	return s + ")"
}

// noOverlaySocket: an encapsulated packet whose outer UDP port nothing takes on the node: no
// tunnel device there (or one on another port).
func (d *Diagnoser) noOverlaySocket(f *finding, hop trace.Hop) {
	o, in := hop.Outer, f.headers()
	ns := f.site.NetnsName
	f.cause = fmt.Sprintf("no %s device on UDP port %d in %s", strings.ToUpper(hop.Encap), o.Dport, ns)
	vni, name := "<VNI>", "<name>"
	kind := hop.Encap
	if hop.VNI != 0 {
		vni, name = fmt.Sprint(hop.VNI), hop.Encap+fmt.Sprint(hop.VNI)
		kind += " VNI " + vni
	}
	f.meaning = fmt.Sprintf("an overlay packet (%s, inner %s > %s) came in %s:%d > %s:%d, but nothing in %s takes UDP port %d: no %s device listens there, so the outer packet was dropped before decapsulation",
		kind, in.Src, in.Dst, o.Src, o.Sport, o.Dst, o.Dport, ns, o.Dport, hop.Encap)
	f.fix = []string{
		inNetns(ns, "ip -d link show type "+hop.Encap+"   # the devices and their dstport"),
		inNetns(ns, fmt.Sprintf("ip link add %s type %s id %s dstport %d dev %s   # or the CNI's own device (flannel.1 on 8472, vxlan.calico on 4789): restart the CNI agent on this node", name, hop.Encap, vni, o.Dport, f.site.Ifname)),
	}
	if d.facts == nil {
		return
	}
	vf, ok := d.facts.(vxlanFacts)
	if !ok || hop.Encap != "vxlan" {
		return
	}
	devs, err := vf.VXLANs(f.site.Netns)
	what := "VXLAN devices in " + ns
	switch {
	case err != nil:
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: err.Error(), Source: "read failed"})
		return
	case len(devs) == 0:
		f.evidence = append(f.evidence, trace.Evidence{What: what, Value: "none", Source: "netlink (ip -d link) in netns " + ns})
		f.sure = true
		return
	}
	var l []string
	for _, v := range devs {
		l = append(l, v.String())
	}
	f.evidence = append(f.evidence, trace.Evidence{What: what, Value: strings.Join(l, "; "), Source: "netlink (ip -d link) in netns " + ns})
	f.meaning += fmt.Sprintf(". The VXLAN devices here use other ports (%s): the sender and this node disagree on the port", strings.Join(l, "; "))
	f.sure = true
}

// noSocketInferred explains a reasonless drop in the transport's receive function (kernels
// before 5.17), where a missing socket and a bad checksum look alike: the node's sockets (or,
// for an overlay packet, its VXLAN devices) tell them apart when they can be read.
func (d *Diagnoser) noSocketInferred(f *finding) {
	fn := funcOf(f.site.Location)
	h, hop := f.headers(), f.dropHop()
	note := fmt.Sprintf(" (the kernel gives no specific drop reason here: at %s that is a missing socket or a bad checksum, and ", fn)
	settled, csum := false, false
	if d.facts != nil {
		if hop.Encap == "vxlan" && hop.Outer != nil {
			if vf, ok := d.facts.(vxlanFacts); ok {
				if devs, err := vf.VXLANs(f.site.Netns); err == nil {
					settled = true
					for _, v := range devs {
						csum = csum || v.Port == hop.Outer.Dport
					}
				}
			}
			if csum {
				note += fmt.Sprintf("a VXLAN device here takes UDP port %d, so it is not a missing socket)", hop.Outer.Dport)
			} else {
				note += fmt.Sprintf("no VXLAN device here takes UDP port %d)", hop.Outer.Dport)
			}
		} else if sf, ok := d.facts.(socketFacts); ok {
			if socks, err := sf.SocketsOn(f.site.Netns, h.Proto.String(), h.Dport); err == nil {
				for _, s := range socks {
					if h.Proto == trace.ProtoTCP && s.State == "LISTEN" && s.RecvQ > s.SendQ {
						// A listener with a full accept queue: its overflow frees the
						// handshake's last ACK here too.
						f.class = listenOverflowClass.Name
						d.listenOverflow(f)
						f.sure = false
						f.meaning += fmt.Sprintf(" (the kernel gives no specific drop reason here: at %s that is a missing socket, a bad checksum or a full accept queue, and this listener's queue is full now)", fn)
						return
					}
				}
				settled, csum = true, len(socks) > 0
				if csum && h.Proto == trace.ProtoTCP {
					note += fmt.Sprintf("a socket is bound to TCP port %d here, so not a missing socket: a bad checksum, a full accept queue (a listener's overflow frees the handshake's last ACK here), a socket filter or the connection's state)", h.Dport)
				} else if csum {
					note += fmt.Sprintf("a socket is bound to %s port %d here, so a bad checksum (or a socket filter) is likelier)", h.Proto, h.Dport)
				} else {
					note += fmt.Sprintf("nothing is bound to %s port %d here)", h.Proto, h.Dport)
				}
			}
		}
	}
	switch {
	case settled && !csum:
		f.site.Reason = "NO_SOCKET"
		d.noSocket(f)
		f.site.Reason = ""
		f.meaning += note
		f.sure = false
	case settled && hop.Encap == "vxlan":
		d.checksum(f)
		f.class = checksumClass.Name
		f.meaning += note
		f.sure = false
	default:
		f.class = reasonClass.Name
		f.cause = "no socket or a bad checksum (no specific drop reason from the kernel)"
		if settled && csum && h.Proto == trace.ProtoTCP {
			f.cause = "dropped by " + fn + ", not for a missing socket (no specific drop reason from the kernel)"
		}
		if settled {
			f.meaning = "dropped by " + fn + note
		} else {
			f.meaning = fmt.Sprintf("dropped by %s: on this kernel (no drop reasons) that is a packet no socket takes or one with a bad checksum, and the node's sockets could not be read to tell them apart", fn)
		}
		counters := "UdpNoPorts Udp6NoPorts UdpInCsumErrors Udp6InCsumErrors"
		if h.Proto == trace.ProtoTCP {
			counters = "TcpInErrs TcpInCsumErrors TcpOutRsts TcpExtListenOverflows TcpExtListenDrops"
		}
		f.notKnown("which of these it was: the kernel gives no specific drop reason here", inNetns(f.site.NetnsName, "nstat -az "+counters)+" while the traffic is sent: the counter that grows with the drops")
		f.fix = []string{
			inNetns(f.site.NetnsName, "nstat -az "+counters+"   # which counter grows with the drops settles it"),
			inNetns(f.site.NetnsName, fmt.Sprintf("ss -ant 'sport = :%d' ; ss -anu 'sport = :%d'", h.Dport, h.Dport)),
		}
	}
}
