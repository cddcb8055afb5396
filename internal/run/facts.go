package run

import (
	"net/netip"

	"github.com/pathtrace/pathtrace/analysis/diagnose"
	"github.com/pathtrace/pathtrace/tracer/nodestate"
)

// nodeFacts gives the diagnosis the node's live state, read through nodestate.
type nodeFacts struct{ r *nodestate.Reader }

// NodeFacts reads namespaces from hostProc's processes and netnsDirs' named namespaces
// (nodestate's defaults when none are given).
func NodeFacts(hostProc string, netnsDirs ...string) diagnose.Facts {
	return nodeFacts{nodestate.New(hostProc, netnsDirs...)}
}

func (f nodeFacts) Sysctl(netns uint32, key string) (string, error) { return f.r.Sysctl(netns, key) }

func (f nodeFacts) TCPrograms(netns uint32, dev, direction string) ([]diagnose.Program, error) {
	ps, err := f.r.TCPrograms(netns, dev, direction)
	out := make([]diagnose.Program, 0, len(ps))
	for _, p := range ps {
		out = append(out, diagnose.Program{Name: p.Name, Tag: p.Tag, Kind: p.Kind, Direction: p.Direction, ID: p.ID})
	}
	return out, err
}

func (f nodeFacts) Neighbour(netns uint32, dev string, addr netip.Addr) (string, error) {
	return f.r.Neighbour(netns, dev, addr)
}

func (f nodeFacts) Offload(netns uint32, dev string) (diagnose.Offload, error) {
	o, err := f.r.ChecksumOffload(netns, dev)
	return diagnose.Offload{TxChecksum: o.TxChecksum, RxChecksum: o.RxChecksum, Kind: o.Kind, VXLANPort: o.VXLANPort}, err
}

func (f nodeFacts) VXLANDevices(netns uint32) (map[string]uint16, error) {
	return f.r.VXLANDevices(netns)
}
