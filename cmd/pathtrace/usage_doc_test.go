package main

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// readmeUsage reads the README's usage block: the first fenced block after "## Usage". It
// returns, per command ("" for the main one, "show", "merge", "demo"), the flags its lines
// name, comments (after "#") left out. A line starting with "pathtrace" begins a command; an
// indented one continues it.
func readmeUsage(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flag := regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	usage := map[string][]string{}
	inSection, inBlock, seen := false, false, false
	cmd := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inSection = strings.TrimSpace(line) == "## Usage"
			continue
		case !inSection || seen && !inBlock:
			continue
		case strings.HasPrefix(line, "```"):
			if inBlock {
				return usage
			}
			inBlock, seen = true, true
			continue
		case !inBlock:
			continue
		}
		line, _, _ = strings.Cut(line, "#")
		if fields := strings.Fields(line); len(fields) > 0 && fields[0] == "pathtrace" && !strings.HasPrefix(line, " ") {
			cmd = ""
			if len(fields) > 1 && !strings.HasPrefix(fields[1], "-") {
				cmd = fields[1]
			}
			if _, ok := usage[cmd]; !ok {
				usage[cmd] = []string{}
			}
		} else if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, " ") {
			t.Fatalf("%s: usage line %q neither starts a command (\"pathtrace ...\") nor continues one (indented)", name, line)
		}
		for _, fl := range flag.FindAllString(line, -1) {
			usage[cmd] = append(usage[cmd], strings.TrimPrefix(fl, "--"))
		}
	}
	if !seen {
		t.Fatalf("%s: no code block under \"## Usage\"", name)
	}
	t.Fatalf("%s: the usage block does not end", name)
	return nil
}

// visibleFlags are the flags c's help lists (hidden ones are not), by long name.
func visibleFlags(c *cobra.Command) []string {
	var out []string
	for _, m := range helpFlag.FindAllStringSubmatch(c.Flags().FlagUsages(), -1) {
		out = append(out, m[1])
	}
	return out
}

// helpFlag is a line of cobra's flag help: "  -h, --help   help for ..." or "      --json string   ...".
var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// The README's usage names every flag a user may give the main command, show, merge and demo,
// each on its own command's lines, and no flag that does not exist or is hidden.
func TestReadmeUsageNamesEveryFlag(t *testing.T) {
	const readme = "../../README.md"
	usage := readmeUsage(t, readme)
	root := newRootCmd()
	cmds := map[string]*cobra.Command{"": root}
	for _, name := range []string{"show", "merge", "demo", "version"} {
		sub, _, err := root.Find([]string{name})
		if err != nil || sub == root {
			t.Fatalf("no %s command: %v", name, err)
		}
		cmds[name] = sub
	}
	for _, c := range root.Commands() {
		if _, ok := cmds[c.Name()]; !ok && c.IsAvailableCommand() && c.Name() != "help" && c.Name() != "completion" {
			t.Errorf("pathtrace %s is not in the README's usage, nor in this test's list of commands", c.Name())
		}
	}
	for name, c := range cmds {
		shown := "pathtrace " + name
		if name == "" {
			shown = "pathtrace"
		}
		named, ok := usage[name]
		if !ok {
			t.Errorf("README.md usage has no line for %s", shown)
			continue
		}
		for _, fl := range visibleFlags(c) {
			if !slices.Contains(named, fl) {
				t.Errorf("README.md usage: %s --%s is missing (%s)", shown, fl, c.Flags().Lookup(fl).Usage)
			}
		}
		for _, fl := range named {
			switch f := c.Flags().Lookup(fl); {
			case fl == "help" || fl == "version" && name == "":
				// cobra's own: added when the command runs
			case f == nil:
				t.Errorf("README.md usage: %s has no flag --%s", shown, fl)
			case f.Hidden:
				t.Errorf("README.md usage: %s --%s is hidden (for tests), not for users", shown, fl)
			}
		}
	}
}
