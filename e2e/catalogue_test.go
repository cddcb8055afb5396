package e2e

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pathtrace/pathtrace/internal/lab"
	"github.com/pathtrace/pathtrace/trace"
)

// The scenario catalogue: each scenario breaks a lab the way a node breaks in production,
// traces the flow, and checks what the verdict says — its class, place, reason, cause,
// evidence and fix — and that a packet which was not delivered is never called delivered.
// Scenarios register from catalogue_<class>_test.go files; TestScenarios runs them all, and
// docs/scenarios.md lists them with what pathtrace said (-update-scenarios rewrites it).

var updateScenarios = flag.Bool("update-scenarios", false, "rewrite docs/scenarios.md from this run's verdicts")

// A scenario is one failure, built on the standard topology (pod -- node -- ext).
type scenario struct {
	name  string // "<class>/<what>", e.g. "route/unreachable-v4"
	about string // one line for docs/scenarios.md: what is broken
	// setup breaks the lab and returns pathtrace's arguments and the traffic to send while
	// it runs. It may call t.Fatal.
	setup func(t *testing.T, s *scenarioLab) (args []string, traffic func(t *testing.T))
	want  want
}

// scenarioLab is the lab a scenario breaks.
type scenarioLab struct {
	*lab.Topology
	Pod6, Ext6 string // set when the scenario asked for IPv6 (v6: true)
}

// want is what the verdict must say. Empty fields are not checked; strings are substrings
// unless said otherwise. Namespaces are given by role ("pod", "node", "ext") and resolved to
// the lab's names.
type want struct {
	v6      bool   // give the lab IPv6 before setup
	outcome string // exact: "dropped", "unknown", ...
	class   string // exact: the catalogue's class
	// classNoReasons, when set, is the class on a kernel without drop reasons (before 5.17),
	// where an inferring class (tc-program-inferred...) explains the drop.
	classNoReasons string
	// noReasons, when set, is the whole want on a kernel without drop reasons, where the
	// verdict can only say less (the cause it could not tell apart, and what would settle it).
	noReasons *want
	// causeAny: the cause holds one of these (a verdict that depends on what the node's state
	// shows when it is read).
	causeAny []string
	netns    string // role of the verdict's place
	ifname   string // device of the verdict's place (in the summary)
	reason   string // the kernel's reason; on a kernel without drop reasons, a reason must be inferred as this or be empty
	cause    string
	evidence []evidence // what exactly, value as substring
	fix      string
	summary  []string // substrings of the summary
	// delivered allows "delivered"/"healthy" (a scenario whose packets really are delivered).
	delivered bool
}

var scenarios struct {
	sync.Mutex
	list []scenario
}

// addScenario registers a scenario; catalogue_*_test.go files call it from a var declaration.
func addScenario(s scenario) bool {
	scenarios.Lock()
	defer scenarios.Unlock()
	scenarios.list = append(scenarios.list, s)
	return true
}

func sortedScenarios() []scenario {
	scenarios.Lock()
	defer scenarios.Unlock()
	l := append([]scenario(nil), scenarios.list...)
	sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	return l
}

// scenarioNet numbers scenarios' subnets apart from the other e2e tests' (1..99).
func scenarioNet(i int) uint8 { return uint8(100 + i) }

func TestScenarios(t *testing.T) {
	list := sortedScenarios()
	if len(list) > 150 {
		t.Fatalf("%d scenarios: scenarioNet runs out of subnets", len(list))
	}
	rows := map[string]string{}
	var mu sync.Mutex
	// Two at a time: most of a scenario's time is pathtrace loading its programs (half a
	// minute under qemu's emulation), which two runs do side by side; each traces its own
	// lab's subnet only. Nothing must be left once the group is over.
	// A parent's cleanup runs once its parallel subtests are over.
	t.Cleanup(func() {
		requireNothingLeft(t)
		checkScenarioDoc(t, list, rows)
	})
	slots := make(chan struct{}, scenarioParallel())
	for i, sc := range list {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			v := runScenario(t, sc, scenarioNet(i))
			mu.Lock()
			rows[sc.name] = scenarioRow(sc, v)
			mu.Unlock()
		})
	}
}

// scenarioParallel is how many scenarios run at once: PATHTRACE_SCENARIOS_AT_ONCE, 2 by default.
func scenarioParallel() int {
	if n, err := strconv.Atoi(os.Getenv("PATHTRACE_SCENARIOS_AT_ONCE")); err == nil && n > 0 {
		return n
	}
	return 2
}

// short names a scenario in the lab's namespace names (they must stay short: device and
// namespace names are limited).
var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

func runScenario(t *testing.T, sc scenario, net uint8) trace.Verdict {
	name := nonAlnum.ReplaceAllString(sc.name, "")
	if len(name) > 10 {
		name = name[:10]
	}
	topo := standard(t, fmt.Sprintf("s%d%s", net, name), net)
	sl := &scenarioLab{Topology: topo}
	if sc.want.v6 {
		pod, ext, err := topo.AddIPv6()
		if err != nil {
			t.Fatalf("IPv6 in the lab: %v", err)
		}
		sl.Pod6, sl.Ext6 = pod.String(), ext.String()
	}
	args, traffic := sc.setup(t, sl)
	s := start(t, args...)
	traffic(t)
	tr := s.end(syscall.SIGINT) // the leftover check waits for the other scenarios

	w := sc.want
	if w.noReasons != nil && !reasonGiven(tr) {
		w = *w.noReasons
	}
	checkVerdict(t, tr, s.stdout.String(), sl, w)
	return tr.Verdict
}

func (s *scenarioLab) role(r string) string {
	switch r {
	case "pod":
		return s.Pod.Name()
	case "node":
		return s.Node.Name()
	case "ext":
		return s.Ext.Name()
	}
	return r
}

func checkVerdict(t *testing.T, tr *trace.Trace, out string, sl *scenarioLab, w want) {
	t.Helper()
	v := tr.Verdict
	t.Logf("verdict: %+v", v)
	if !w.delivered && (v.Outcome == "delivered" || strings.Contains(v.Summary, "healthy")) {
		t.Errorf("verdict says delivered/healthy for a flow that was not: %s", v.Summary)
	}
	if w.outcome != "" && v.Outcome != w.outcome {
		t.Errorf("verdict outcome %q, want %q (%s)", v.Outcome, w.outcome, v.Summary)
	}
	class := w.class
	if w.classNoReasons != "" && !reasonGiven(tr) {
		class = w.classNoReasons
	}
	if class != "" && v.Class != class {
		t.Errorf("verdict class %q, want %q (%s)", v.Class, class, v.Summary)
	}
	if w.netns != "" && !strings.Contains(v.Summary, sl.role(w.netns)) {
		t.Errorf("verdict summary does not name %s (%s): %s", w.netns, sl.role(w.netns), v.Summary)
	}
	if w.ifname != "" && !strings.Contains(v.Summary, w.ifname) {
		t.Errorf("verdict summary does not name %s: %s", w.ifname, v.Summary)
	}
	if w.reason != "" {
		site := siteOf(tr)
		switch {
		case site == nil:
			t.Errorf("no drop site, want reason %s", w.reason)
		case site.Reason == "NOT_SPECIFIED":
			// Older kernels name fewer drops: the class must tell it from the place and the
			// node's state, which the rest of the want checks.
			t.Logf("the kernel gives no specific reason for this drop (NOT_SPECIFIED at %s), want %s where it does", site.Location, w.reason)
		case !reasonIs(site.Reason, w.reason):
			t.Errorf("drop reason %q at %s, want %q", site.Reason, site.Location, w.reason)
		}
	}
	if w.cause != "" && !strings.Contains(v.Cause, w.cause) {
		t.Errorf("verdict cause %q lacks %q", v.Cause, w.cause)
	}
	if len(w.causeAny) > 0 && !slices.ContainsFunc(w.causeAny, func(c string) bool { return strings.Contains(v.Cause, c) }) {
		t.Errorf("verdict cause %q holds none of %q", v.Cause, w.causeAny)
	}
	for _, e := range w.evidence {
		found := false
		for _, got := range v.Evidence {
			found = found || (got.What == e.what && strings.Contains(got.Value, e.value))
		}
		if !found {
			t.Errorf("verdict evidence lacks %s = ...%s...: %+v", e.what, e.value, v.Evidence)
		}
	}
	if w.fix != "" && !strings.Contains(strings.Join(v.Fix, "\n"), w.fix) {
		t.Errorf("verdict fix %q lacks %q", v.Fix, w.fix)
	}
	for _, s := range w.summary {
		if !strings.Contains(v.Summary, s) {
			t.Errorf("verdict summary lacks %q: %s", s, v.Summary)
		}
	}
	if !strings.Contains(out, firstWords(v.Summary)) {
		t.Errorf("the text output does not carry the verdict %q", v.Summary)
	}
}

// siteOf is the drop site the verdict is about: the most frequent in the flows' summaries.
func siteOf(tr *trace.Trace) *trace.DropSite {
	var best *trace.DropSite
	for i := range tr.Flows {
		for j := range tr.Flows[i].Drops {
			if d := &tr.Flows[i].Drops[j]; best == nil || d.Count > best.Count {
				best = d
			}
		}
	}
	return best
}

func firstWords(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

const scenarioDoc = "../docs/scenarios.md"

// labName is a scenario lab's namespace name; the table says its role instead, which does not
// change when scenarios are added.
var labName = regexp.MustCompile(`pte2e-s[0-9]+[a-z0-9]*-(pod|node|ext)`)

func scenarioRow(sc scenario, v trace.Verdict) string {
	cell := func(s string) string {
		s = labName.ReplaceAllString(s, "$1")
		return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
	}
	return fmt.Sprintf("| `%s` | %s | `%s` | %s | %s |", sc.name, cell(sc.about), v.Class, cell(v.Cause), cell(v.Summary))
}

// checkScenarioDoc holds docs/scenarios.md to the scenarios: every scenario has a row, with
// the class this run's verdict had. -update-scenarios rewrites it from this run.
func checkScenarioDoc(t *testing.T, list []scenario, rows map[string]string) {
	if *updateScenarios {
		// A run of some scenarios (-run) rewrites their rows and keeps the others'.
		old := map[string]string{}
		if doc, err := os.ReadFile(scenarioDoc); err == nil {
			for _, line := range strings.Split(string(doc), "\n") {
				if name, _, ok := strings.Cut(strings.TrimPrefix(line, "| `"), "` |"); ok && strings.HasPrefix(line, "| `") {
					old[name] = line
				}
			}
		}
		var b strings.Builder
		b.WriteString(scenarioDocHead)
		for _, sc := range list {
			if r, ok := rows[sc.name]; ok {
				b.WriteString(r + "\n")
			} else if r, ok := old[sc.name]; ok {
				b.WriteString(r + "\n")
			}
		}
		if err := os.WriteFile(scenarioDoc, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	doc, err := os.ReadFile(scenarioDoc)
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("PATHTRACE_BIN") != "" {
		// A test binary run away from its tree (make vmtest's VMs): the verdicts were checked,
		// the table is checked where the tree is.
		t.Logf("%s not here: its table is checked on the host", scenarioDoc)
		return
	}
	if err != nil {
		t.Fatalf("%v (go test ./e2e -run TestScenarios -update-scenarios writes it)", err)
	}
	for _, sc := range list {
		r, ok := rows[sc.name]
		if !ok {
			continue // the subtest did not run (-run) or failed before its verdict
		}
		class := strings.Split(r, " | ")[2]
		found := false
		for _, line := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(line, "| `"+sc.name+"` |") && strings.Split(line, " | ")[2] == class {
				found = true
			}
		}
		if !found {
			t.Errorf("%s has no row for scenario %s with class %s: go test ./e2e -run TestScenarios -update-scenarios", scenarioDoc, sc.name, class)
		}
	}
}

const scenarioDocHead = `# Scenarios

Every failure pathtrace is tested on, built as a lab (` + "`internal/lab`" + `) and traced for real
by ` + "`go test ./e2e -run TestScenarios`" + ` (on this kernel and in ` + "`make vmtest`" + `). The table is
what the verdict said on the run that wrote it (` + "`-update-scenarios`" + `); the test checks each
scenario's row and class. The classes are in [verdicts.md](verdicts.md#the-catalogue).

| scenario | what is broken | class | cause | what pathtrace says |
|---|---|---|---|---|
`

// reasonGiven says whether the kernel named the reason of the verdict's drop: not before 5.17,
// and not for every drop after it (NOT_SPECIFIED where a release had not named it yet).
func reasonGiven(tr *trace.Trace) bool {
	if !hasDropReasons() {
		return false
	}
	site := siteOf(tr)
	return site == nil || site.Reason != "NOT_SPECIFIED"
}
