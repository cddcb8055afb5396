package diagnose

import "github.com/pathtrace/pathtrace/trace"

// reasonClass takes every drop no other class recognises: the kernel's reason put in words
// (explain.go), the place and the location, nothing read from the node. Its verdict's
// confidence says that nothing confirmed it.
var reasonClass = register(Class{
	Name:       "kernel-reason",
	Order:      1000,
	Recognises: "any other drop",
	Reads:      "nothing: the kernel's drop reason, put in words, and where it happened",
	Fix:        "none named: the reason and the place are what is known",
	Drop:       func(*trace.DropSite, string) bool { return true },
	Explain: func(_ *Diagnoser, f *finding) {
		if noReason(f.site.Reason) {
			f.notKnown("why it was dropped: the kernel gives no specific drop reason here, only the place ("+f.site.Location+")",
				"read "+f.site.Location+" in this kernel version's source, or trace the flow on a kernel that names this drop (drop reasons came with 5.17 and grow with each release)")
		}
	},
})
