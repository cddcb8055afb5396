package diagnose

import (
	"fmt"
	"net/netip"

	"github.com/pathtrace/pathtrace/trace"
)

var _ = register(Class{
	Name:       "no-socket",
	Order:      80,
	Recognises: "`NO_SOCKET`",
	Reads:      "the destination address and port",
	Fix:        "the listening service",
	Drop:       func(s *trace.DropSite, _ string) bool { return s.Reason == "NO_SOCKET" },
	Explain:    (*Diagnoser).noSocket,
})

func (d *Diagnoser) noSocket(f *finding) {
	h := f.headers()
	f.cause = "nothing listening"
	f.meaning = fmt.Sprintf("it reached %s but nothing listens on %s port %d there", f.site.Area(), h.Proto, h.Dport)
	if h.Proto != trace.ProtoTCP && h.Proto != trace.ProtoUDP {
		f.meaning = fmt.Sprintf("it reached %s but no socket there takes %s", f.site.Area(), h.Proto)
	}
	f.fix = []string{"check that the service runs and listens on " + netip.AddrPortFrom(h.Dst, h.Dport).String() + " (for a Service: its endpoints and targetPort)"}
	f.sure = true
}
