package tracer

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/pathtrace/pathtrace/trace"
	"github.com/pathtrace/pathtrace/tracer/ksym"
	"github.com/pathtrace/pathtrace/tracer/netns"
)

// symbols is the kernel's symbol table, read in the background from the end of Open on (it
// takes ~60-100 ms), while the run sets up the rest; the first drop waits for it if need be.
type symbols struct {
	done  chan struct{}
	table *ksym.Table
	err   error
}

func loadSymbols(path string) *symbols {
	s := &symbols{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.table, s.err = ksym.Load(path)
	}()
	return s
}

// wait returns the table once read: nil, with the reason, when it could not be.
func (s *symbols) wait() (*ksym.Table, error) {
	if s == nil {
		return nil, nil
	}
	<-s.done
	return s.table, s.err
}

// nameCache keeps the strings decoding makes, so that the same device name or drop location
// is one string shared by every hop that has it, not an allocation per event. Only the reader
// goroutine uses it. A cache that fills up (a node with thousands of devices) starts over.
type nameCache struct {
	ifnames   map[[16]int8]string
	locations map[uint64]string
	// The headers of the latest event on each CPU: a packet's hops follow one another on one
	// CPU, mostly with the same headers, and then share one copy of them.
	lastHeaders []*trace.Headers
	// routes are the latest routes decoded, whatever the CPU: a flow's lookups repeat, a
	// few different ones (one per namespace it crosses) taking turns.
	routes    [8]*trace.Route
	nextRoute int
	// The copies are made in slabs: one allocation for many events.
	headerSlab []trace.Headers
	routeSlab  []trace.Route
	// netns are the namespace names the resolver gave lately, with the event time it gave each
	// at: asking it costs a lock and a clock read, and it renames on its own clock anyway.
	netns map[uint32]netnsName
	// Every event names its namespace and device: the latest few, found without hashing.
	recentNetns   [8]netnsName
	recentIfnames [8]ifnameEntry
}

type ifnameEntry struct {
	raw  [16]int8
	name string
}

type netnsName struct {
	ino  uint32 // in recentNetns
	name string
	atNS uint64
}

// netnsTTL is how long, in event time, a namespace's name is used before the resolver is asked
// again: short beside its own rescan period, long beside the time between events of a flood.
const netnsTTL = uint64(10 * time.Millisecond)

// netnsName names namespace ino for an event at nowNS (kernel monotonic time).
func (c *nameCache) netnsName(ino uint32, nowNS uint64, r *netns.Namer) string {
	recent := &c.recentNetns[ino%uint32(len(c.recentNetns))]
	if e := recent; e.ino == ino && e.atNS != 0 && nowNS >= e.atNS && nowNS-e.atNS < netnsTTL {
		return e.name
	}
	if e, ok := c.netns[ino]; ok && nowNS >= e.atNS && nowNS-e.atNS < netnsTTL {
		*recent = e
		return e.name
	}
	if c.netns == nil || len(c.netns) >= nameCacheMax {
		c.netns = make(map[uint32]netnsName)
	}
	e := netnsName{ino: ino, name: r.Name(ino), atNS: nowNS}
	c.netns[ino] = e
	*recent = e
	return e.name
}

// maxCPU bounds the per-CPU caches; events of CPUs past it get copies of their own.
const maxCPU = 4096

// headers is hdr, as the copy made for the latest event on cpu if that had the same.
func (c *nameCache) headers(cpu uint32, hdr *trace.Headers) *trace.Headers {
	return latestOnCPU(&c.lastHeaders, &c.headerSlab, cpu, hdr)
}

// route is r, as one of the latest copies made if one is the same.
func (c *nameCache) route(r *trace.Route) *trace.Route {
	for _, p := range c.routes {
		// The numbers first: most differ there, and a Route's strings take longer to compare.
		if p != nil && p.Table == r.Table && p.OutIndex == r.OutIndex && p.Iif == r.Iif && *p == *r {
			return p
		}
	}
	p := fromSlab(&c.routeSlab)
	*p = *r
	c.routes[c.nextRoute] = p
	c.nextRoute = (c.nextRoute + 1) % len(c.routes)
	return p
}

// fromSlab is a new T, from the slab of them allocated at once.
func fromSlab[T any](slab *[]T) *T {
	if len(*slab) == 0 {
		// A hop keeps its slab alive: a few KiB, for the few hops kept long (a verdict's
		// example packet).
		*slab = make([]T, slabLen)
	}
	p := &(*slab)[0]
	*slab = (*slab)[1:]
	return p
}

// latestOnCPU is v, as the copy last made on cpu if that has the same value, else a new copy
// (from slab), which becomes cpu's latest.
func latestOnCPU[T comparable](latest *[]*T, slab *[]T, cpu uint32, v *T) *T {
	if int(cpu) < len(*latest) {
		if p := (*latest)[cpu]; p != nil && *p == *v {
			return p
		}
	}
	p := fromSlab(slab)
	*p = *v
	if cpu < maxCPU {
		if int(cpu) >= len(*latest) {
			*latest = append(*latest, make([]*T, int(cpu)+1-len(*latest))...)
		}
		(*latest)[cpu] = p
	}
	return p
}

const nameCacheMax = 4096

// slabLen is how many headers or routes one allocation makes room for.
const slabLen = 32

func (c *nameCache) ifname(raw *[16]int8) string {
	b := int8sToBytes(raw[:])
	recent := &c.recentIfnames[(b[0]^b[3]^b[len(b)-1]^b[5])%uint8(len(c.recentIfnames))]
	if recent.raw == *raw { // the zero entry too: its name is ""
		return recent.name
	}
	s, ok := c.ifnames[*raw]
	if !ok {
		if c.ifnames == nil || len(c.ifnames) >= nameCacheMax {
			c.ifnames = make(map[[16]int8]string)
		}
		s = unix.ByteSliceToString(b)
		c.ifnames[*raw] = s
	}
	*recent = ifnameEntry{*raw, s}
	return s
}

// location is addr as "function+0xoff", or in hex without the kernel's symbols.
func (c *nameCache) location(addr uint64, syms *symbols) string {
	if s, ok := c.locations[addr]; ok {
		return s
	}
	if c.locations == nil || len(c.locations) >= nameCacheMax {
		c.locations = make(map[uint64]string)
	}
	table, _ := syms.wait()
	s := table.Symbolize(addr)
	c.locations[addr] = s
	return s
}
