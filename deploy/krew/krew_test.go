// Package krew holds kubectl-pathtrace's krew manifest template (pathtrace.yaml); this test
// checks what make krew makes of it.
package krew

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/yaml"
)

type manifest struct {
	Spec struct {
		Version   string `json:"version"`
		Platforms []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// make krew builds an archive per platform and a manifest whose sha256 are the archives',
// whose URLs carry the version, and whose plugin says the version and the release's image.
// Built twice, the archives are the same bytes: the sha256 of a release can be checked by
// anyone who builds the tag. Cold, the cross-builds take a few minutes (-short skips it).
func TestMakeKrew(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the plugin for four platforms")
	}
	for _, tool := range []string{"make", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on $PATH", tool)
		}
	}
	const version, image = "v0.0.1-test.1", "registry.example/pathtrace:v0.0.1-test.1"
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		cmd := exec.Command("make", "-s", "-C", "../..", "krew",
			"VERSION="+version, "RELEASE_IMAGE="+image, "KREW_OUT="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make krew: %v\n%s", err, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(dirs[0], "pathtrace.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Spec.Version != version {
		t.Errorf("spec.version %q, want %q", m.Spec.Version, version)
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		plat := p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]
		seen[plat] = true
		name := "kubectl-pathtrace_" + plat + ".tar.gz"
		if want := "https://github.com/pathtrace/pathtrace/releases/download/" + version + "/" + name; p.URI != want {
			t.Errorf("%s: uri %s, want %s", plat, p.URI, want)
		}
		archive := filepath.Join(dirs[0], name)
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Errorf("%s: %v", plat, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); p.SHA256 != got {
			t.Errorf("%s: manifest sha256 %s, the archive's is %s", plat, p.SHA256, got)
		}
		again, err := os.ReadFile(filepath.Join(dirs[1], name))
		if err != nil || string(again) != string(b) {
			t.Errorf("%s: a second make krew made another archive (%v): not reproducible", plat, err)
		}
		bin := extract(t, archive, p.Bin, filepath.Join(t.TempDir(), p.Bin))
		if plat == runtime.GOOS+"_"+runtime.GOARCH {
			out, err := exec.Command(bin, "--version").CombinedOutput()
			if want := "kubectl-pathtrace version " + version + "\nimage " + image + "\n"; err != nil || string(out) != want {
				t.Errorf("%s --version: %q (%v), want %q", name, out, err, want)
			}
		}
	}
	for _, plat := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"} {
		if !seen[plat] {
			t.Errorf("the manifest has no %s", plat)
		}
	}
	// Not a release version: refused, rather than a manifest krew would reject.
	out, err := exec.Command("make", "-s", "-C", "../..", "krew", "VERSION=1.2", "KREW_OUT="+t.TempDir()).CombinedOutput()
	if err == nil {
		t.Errorf("make krew VERSION=1.2 succeeded:\n%s", out)
	}
}

// extract writes the archive's executable entry name to path, and fails unless it is there.
func extract(t *testing.T, archive, name, path string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no %s", archive, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name {
			continue
		}
		if h.Mode&0o111 == 0 {
			t.Errorf("%s: %s is not executable (%o)", archive, name, h.Mode)
		}
		out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
}
