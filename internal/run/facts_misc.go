package run

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/analysis/diagnose"
)

// The optional Facts the socket, tc-filter, martian and VXLAN classes read (class_socket.go,
// class_tc.go, class_martian.go, class_encap.go).

func (f nodeFacts) SocketsOn(netns uint32, proto string, port uint16) ([]diagnose.Socket, error) {
	ss, err := f.r.SocketsOn(netns, proto, port)
	out := make([]diagnose.Socket, 0, len(ss))
	for _, s := range ss {
		out = append(out, diagnose.Socket{Proto: s.Proto, State: s.State, Local: s.Local, RecvQ: s.RecvQ, SendQ: s.SendQ,
			RmemAlloc: s.RmemAlloc, Rcvbuf: s.Rcvbuf, Drops: s.Drops, HasMem: s.HasMem, Procs: s.Procs})
	}
	return out, err
}

func (f nodeFacts) TCFilters(netns uint32, dev, direction string) (string, []diagnose.TCFilter, error) {
	kind, fs, err := f.r.TCFilters(netns, dev, direction)
	out := make([]diagnose.TCFilter, 0, len(fs))
	for _, t := range fs {
		out = append(out, diagnose.TCFilter{Kind: t.Kind, Handle: t.Handle, Protocol: t.Protocol, Text: t.Text, Pref: t.Pref, Drops: t.Drops})
	}
	return kind, out, err
}

func (f nodeFacts) AddrOwner(netns uint32, addr netip.Addr) (string, string, error) {
	return f.r.AddrOwner(netns, addr)
}

func (f nodeFacts) VXLANs(netns uint32) ([]diagnose.VXLANDevice, error) {
	vs, err := f.r.VXLANs(netns)
	out := make([]diagnose.VXLANDevice, 0, len(vs))
	for _, v := range vs {
		out = append(out, diagnose.VXLANDevice{Name: v.Name, Underlay: v.Underlay, VNI: v.VNI, Port: v.Port, Up: v.Up})
	}
	return out, err
}

// RouteBack is the route the namespace would use to answer addr (class_rpfilter.go).
func (f nodeFacts) RouteBack(netns uint32, addr netip.Addr) (string, error) {
	return f.r.RouteTo(netns, addr)
}
