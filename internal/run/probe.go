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

	mu   sync.Mutex
	meta trace.SentProbe
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

// start sends in the background until the probes are sent and ctx ends (the sockets stay open
// for the replies until then).
func (s *sender) start(ctx context.Context) {
	p := s.p
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
