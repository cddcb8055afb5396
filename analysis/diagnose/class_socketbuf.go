package diagnose

import (
	"fmt"
	"strings"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "socket-rcvbuf",
	Order:      81,
	Recognises: "`SOCKET_RCVBUFF`",
	Reads:      "the socket on the destination port (`ss -lunpm`): its receive buffer size and use, its drop count, the process that holds it",
	Fix:        "the application must read faster; a larger `SO_RCVBUF` (capped by `net.core.rmem_max`)",
	Drop: func(s *trace.DropSite, fn string) bool {
		// Before 5.17: no reason, freed where a UDP socket refuses to queue it.
		return s.Reason == "SOCKET_RCVBUFF" || (noReason(s.Reason) && (fn == "__udp_queue_rcv_skb" || fn == "udp_queue_rcv_one_skb"))
	},
	Explain: func(d *Diagnoser, f *finding) {
		if !noReason(f.site.Reason) {
			d.rcvbuf(f)
			return
		}
		d.rcvbuf(f)
		if !f.sure {
			f.class = reasonClass.Name
			f.cause = "the UDP socket did not queue it (no specific drop reason from the kernel)"
			f.meaning = "dropped at " + f.site.Location + ": a UDP socket refused to queue it (a full receive buffer, or a socket filter), and the socket could not be read to tell"
			return
		}
		f.sure = false
		f.meaning += " (the kernel gives no specific drop reason here: " + f.site.Location + " is where a UDP socket refuses a packet, and this socket's drop count is not zero)"
	},
})

func (d *Diagnoser) rcvbuf(f *finding) {
	h := f.headers()
	ns := f.site.NetnsName
	proto := strings.ToUpper(h.Proto.String())
	f.cause = fmt.Sprintf("receive buffer full on %s port %d", proto, h.Dport)
	f.meaning = fmt.Sprintf("the socket on %s port %d in %s did not read fast enough: its receive buffer was full and the kernel dropped what came in", proto, h.Dport, ns)
	f.fix = []string{
		inNetns(ns, fmt.Sprintf("ss -lunpm 'sport = :%d'   # the socket's buffer (rb) and drops (d), and its process", h.Dport)),
		"make the application read faster, or give it a larger SO_RCVBUF (setsockopt; capped by net.core.rmem_max, default net.core.rmem_default)",
	}
	if d.facts == nil {
		return
	}
	sf, ok := d.facts.(socketFacts)
	if !ok {
		return
	}
	socks, err := sf.SocketsOn(f.site.Netns, h.Proto.String(), h.Dport)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: fmt.Sprintf("%s socket on port %d", proto, h.Dport), Value: err.Error(), Source: "read failed"})
		return
	}
	for _, s := range socks {
		if s.Local.Addr().IsValid() && !s.Local.Addr().IsUnspecified() && s.Local.Addr() != h.Dst {
			continue
		}
		v := s.String()
		if s.HasMem {
			v += fmt.Sprintf(": rcvbuf %d bytes, %d in use, %d drops", s.Rcvbuf, s.RmemAlloc, s.Drops)
		}
		name := strings.TrimPrefix(s.String(), s.Proto+" "+s.State+" ")
		if i := strings.Index(name, " "); i > 0 {
			name = name[:i]
		}
		f.evidence = append(f.evidence, trace.Evidence{What: proto + " socket " + name, Value: v, Source: "sock_diag (ss -m) in netns " + ns})
		who := "its process could not be found"
		if len(s.Procs) > 0 {
			who = "held by " + strings.Join(s.Procs, ", ")
		}
		f.meaning = fmt.Sprintf("the socket %s in %s (%s) did not read fast enough: its receive buffer", name, ns, who)
		if s.HasMem {
			f.meaning += fmt.Sprintf(" (%d bytes; %d in use now; %d drops so far)", s.Rcvbuf, s.RmemAlloc, s.Drops)
		}
		f.meaning += " was full and the kernel dropped what came in"
		f.sure = !s.HasMem || s.Drops > 0 || f.site.Reason != ""
		if len(s.Procs) > 0 {
			f.fix[1] = "make " + strings.Join(s.Procs, ", ") + " read faster, or give it a larger SO_RCVBUF (setsockopt; capped by net.core.rmem_max, default net.core.rmem_default)"
		}
		return
	}
	f.evidence = append(f.evidence, trace.Evidence{What: fmt.Sprintf("%s socket on port %d", proto, h.Dport), Value: "none now (closed since?)", Source: "sock_diag (ss) in netns " + ns})
}

var listenOverflowClass = register(Class{
	Name:       "listen-overflow",
	Order:      82,
	Recognises: "`TCP_LISTEN_OVERFLOW`",
	Reads:      "the listener on the destination port: its accept queue and backlog, the process that holds it",
	Fix:        "the application must accept faster; a larger `listen()` backlog and `net.core.somaxconn`",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "TCP_LISTEN_OVERFLOW" },
	Explain:    (*Diagnoser).listenOverflow,
})

func (d *Diagnoser) listenOverflow(f *finding) {
	h := f.headers()
	ns := f.site.NetnsName
	f.cause = fmt.Sprintf("accept queue full on TCP port %d", h.Dport)
	f.meaning = fmt.Sprintf("the listener on TCP port %d in %s does not accept connections fast enough: its accept queue was full", h.Dport, ns)
	f.fix = []string{
		inNetns(ns, fmt.Sprintf("ss -ltnp 'sport = :%d'   # Recv-Q: connections waiting to be accepted; Send-Q: the backlog", h.Dport)),
		"make the application accept faster, or give it a larger listen() backlog",
		inNetns(ns, "sysctl -w net.core.somaxconn=4096   # the cap on any listen() backlog in this namespace"),
		inNetns(ns, "nstat -az TcpExtListenOverflows TcpExtListenDrops   # SYNs that come while the queue is full are discarded without a drop event"),
	}
	f.meaning += "; SYNs that arrive while it is full are discarded silently (counted in TcpExtListenOverflows)"
	if d.facts == nil {
		return
	}
	sf, ok := d.facts.(socketFacts)
	if !ok {
		return
	}
	socks, err := sf.SocketsOn(f.site.Netns, "tcp", h.Dport)
	if err != nil {
		f.evidence = append(f.evidence, trace.Evidence{What: fmt.Sprintf("TCP listener on port %d", h.Dport), Value: err.Error(), Source: "read failed"})
		return
	}
	for _, s := range socks {
		if s.State != "LISTEN" {
			continue
		}
		f.evidence = append(f.evidence, trace.Evidence{What: fmt.Sprintf("TCP listener on port %d", h.Dport),
			Value: fmt.Sprintf("%s: %d waiting to be accepted, backlog %d", s, s.RecvQ, s.SendQ), Source: "sock_diag (ss) in netns " + ns})
		f.cause = fmt.Sprintf("accept queue full on TCP port %d (backlog %d)", h.Dport, s.SendQ)
		if len(s.Procs) > 0 {
			f.meaning = fmt.Sprintf("the listener on TCP port %d in %s, held by %s, does not accept connections fast enough: its accept queue (backlog %d) was full; SYNs that arrive while it is full are discarded silently (counted in TcpExtListenOverflows)", h.Dport, ns, strings.Join(s.Procs, ", "), s.SendQ)
		}
		f.sure = true
		return
	}
}
