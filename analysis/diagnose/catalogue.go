package diagnose

import (
	"sort"
	"strings"
	"sync"

	"github.com/pathtrace/pathtrace/trace"
)

// A Class is one class of failure the verdict knows. It declares which drops it recognises,
// what node state it reads, and how it words the cause and the fix, so that the knowledge of
// one failure lives in one file (class_*.go) and the docs' table is made from the catalogue.
// Adding a class is one file that registers one, plus its lab scenario and test.
type Class struct {
	Name string // stable and short: it is the verdict's "class" in the JSON
	// Order decides which class explains a drop when several recognise it: lowest first.
	Order int
	// For the docs' table: which drops it recognises, the node state it reads, the fix.
	Recognises, Reads, Fix string

	// Drop recognises a drop site (fn is the function of its location); Explain then fills
	// in the finding: cause, meaning, evidence, fix, and whether the node's state confirms it.
	Drop    func(s *trace.DropSite, fn string) bool
	Explain func(d *Diagnoser, f *finding)

	// Conclude, for a class about a flow with no drop (a packet waiting for a neighbour, a
	// loop, a reply that never came), returns its verdict when it applies. Conclude classes
	// are asked in Order before the plain outcome of the packets' fates is told.
	Conclude func(d *Diagnoser, t *trace.Trace, c *tally) (trace.Verdict, bool)
}

var catalogue struct {
	sync.Mutex
	classes []*Class
	sorted  bool
}

// register adds a class to the catalogue; each class_*.go calls it from a var declaration.
func register(c Class) *Class {
	catalogue.Lock()
	defer catalogue.Unlock()
	for _, o := range catalogue.classes {
		if o.Name == c.Name {
			panic("diagnose: class " + c.Name + " registered twice")
		}
	}
	catalogue.classes = append(catalogue.classes, &c)
	catalogue.sorted = false
	return &c
}

// Classes is the catalogue in the order its classes are asked.
func Classes() []*Class {
	catalogue.Lock()
	defer catalogue.Unlock()
	if !catalogue.sorted {
		sort.SliceStable(catalogue.classes, func(i, j int) bool {
			a, b := catalogue.classes[i], catalogue.classes[j]
			if a.Order != b.Order {
				return a.Order < b.Order
			}
			return a.Name < b.Name
		})
		catalogue.sorted = true
	}
	return append([]*Class(nil), catalogue.classes...)
}

// classOf is the class that explains a drop site, nil when none recognises it (the reason is
// then only put in words).
func classOf(s *trace.DropSite) *Class {
	fn := funcOf(s.Location)
	for _, c := range Classes() {
		if c.Drop != nil && c.Drop(s, fn) {
			return c
		}
	}
	return nil
}

// funcOf is the kernel function of a location ("ip_rcv_finish_core.constprop.0+0x1ab" is in
// ip_rcv_finish_core): the compiler's suffixes on a function's copies (.constprop.N, .isra.N,
// .part.N, .cold) differ between kernel builds, the function does not.
func funcOf(location string) string {
	fn, _, _ := strings.Cut(location, "+")
	fn, _, _ = strings.Cut(fn, ".")
	return fn
}

// noReason: the kernel gave no reason (before 5.17), or none specific (NOT_SPECIFIED, for drops
// a release had not named yet). The classes that infer a cause from the place and the node's
// state take both alike.
func noReason(r string) bool { return r == "" || r == "NOT_SPECIFIED" }
