package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make build and make kubectl-pathtrace stamp the version and the image the plugin runs on the
// nodes (internal/buildinfo): a release's plugin defaults --image to the release's image.
func TestMakefileStampsVersionAndImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	for _, tool := range []string{"make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on $PATH", tool)
		}
	}
	dir := t.TempDir()
	plugin, bin := filepath.Join(dir, "kubectl-pathtrace"), filepath.Join(dir, "pathtrace")
	const version, image = "v9.8.7-test", "registry.example/pathtrace:v9.8.7-test"
	cmd := exec.Command("make", "-s", "-C", "../..", "kubectl-pathtrace", "build",
		"VERSION="+version, "IMAGE="+image, "PLUGIN="+plugin, "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	for _, c := range []struct {
		bin  string
		args []string
		want string
	}{
		{plugin, []string{"--version"}, "kubectl-pathtrace version " + version + "\nimage " + image + "\n"},
		{plugin, []string{"version"}, "kubectl-pathtrace version " + version + "\nimage " + image + "\n"},
		{bin, []string{"version"}, "pathtrace version " + version + "\nimage " + image + "\n"},
		{bin, []string{"--version"}, "pathtrace version " + version + "\n"},
	} {
		out, err := exec.Command(c.bin, c.args...).CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Errorf("%s %s: %q (%v), want %q", filepath.Base(c.bin), strings.Join(c.args, " "), out, err, c.want)
		}
	}
	// --image's default is the stamped image.
	out, err := exec.Command(plugin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `(default "`+image+`")`) {
		t.Errorf("kubectl-pathtrace --help: %v, want --image defaulting to %s:\n%s", err, image, out)
	}
}
