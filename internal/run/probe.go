package run

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/pathtrace/pathtrace/internal/probe"
	"github.com/pathtrace/pathtrace/trace"
)

// sender sends --probe's traffic once tracing is ready and keeps the account of it that the
// trace's meta.probe holds: the trace then says its packets were pathtrace's own.
type sender struct {
	p    probe.Probe
	log  io.Writer
	done chan struct{}

	mu     sync.Mutex
	meta   trace.SentProbe
	idents map[uint16]bool // the ICMP echo ids or source ports the probes left with
}

// newSender checks p and says what is to be sent; log (nil: none) is told of each packet and
// of an error.
func newSender(p probe.Probe, log io.Writer) (*sender, error) {
	if err := p.Validate(); err != nil { // fills in the defaults the meta records
		return nil, err
	}
	s := &sender{p: p, log: log, done: make(chan struct{})}
	s.meta = trace.SentProbe{Kind: p.Kind, Dst: p.Dst, Dport: p.Dport, Netns: p.Netns, Count: p.Count}
	if p.Kind == "dns" {
		s.meta.Name = p.Name
	}
	return s, nil
}

// from names the pod the probes leave from: the --src pod, when they leave from a namespace.
func (s *sender) from(pods []trace.PodInfo) {
	for _, p := range pods {
		if p.Side == "src" && s.meta.Netns != "" {
			s.meta.Pod = p.Key()
		}
	}
}

// start sends in the background until the probes are sent and ctx ends (the sockets stay open
// for the replies until then).
func (s *sender) start(ctx context.Context) {
	p := s.p
	p.Ident = func(id uint16) {
		s.mu.Lock()
		if s.idents == nil {
			s.idents = map[uint16]bool{}
		}
		s.idents[id] = true
		s.mu.Unlock()
	}
	p.Sent = func(format string, args ...any) {
		s.mu.Lock()
		s.meta.Sent++
		s.mu.Unlock()
		if s.log != nil {
			fmt.Fprintf(s.log, "probe: sent "+format+"\n", args...)
		}
	}
	go func() {
		defer close(s.done)
		if err := p.Run(ctx); err != nil {
			s.mu.Lock()
			s.meta.Error = err.Error()
			s.mu.Unlock()
			if s.log != nil {
				fmt.Fprintln(s.log, "pathtrace: "+err.Error())
			}
		}
	}()
}

// planned is the meta before anything is sent, for the header.
func (s *sender) planned() *trace.SentProbe {
	m := s.meta
	m.Sent, m.Error = 0, ""
	return &m
}

// result is the account at the end of the run: ctx is done, so the sender ends (at once: it
// only waits on ctx) and its count is final.
func (s *sender) result() *trace.SentProbe {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meta
	return &m
}

// Mark marks p as a probe or a reply to one (trace.Packet.FromProbe): a packet of the probe's
// protocol whose ICMP echo id, or whose source port going out (destination port coming back),
// is one the probes' sockets had. The ids are known before the packets leave. The run's filter
// already holds the flow's addresses; a request must also go to the probes' destination (a
// reply's source may be a Service's backend, before the node undoes the NAT).
func (s *sender) Mark(p *trace.Packet) {
	t := &p.Tuple
	var id uint16
	switch {
	case s.meta.Kind == "icmp" && (t.Proto == trace.ProtoICMP || t.Proto == trace.ProtoICMPv6):
		switch t.ICMPType {
		case 8, 128: // echo request
			if p.Flow != trace.Request {
				return
			}
		case 0, 129: // echo reply
			if p.Flow != trace.Reply {
				return
			}
		default:
			return
		}
		id = t.ICMPID
	case s.meta.Kind == "tcp" && t.Proto == trace.ProtoTCP, (s.meta.Kind == "udp" || s.meta.Kind == "dns") && t.Proto == trace.ProtoUDP:
		id = t.Sport
		if p.Flow == trace.Reply {
			id = t.Dport
		}
	default:
		return
	}
	if p.Flow == trace.Request && t.Dst != s.meta.Dst {
		return
	}
	s.mu.Lock()
	p.FromProbe = s.idents[id]
	s.mu.Unlock()
}
