package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

type entry struct {
	name string
	body []byte
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobEntry(b []byte) entry {
	return entry{"blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:"), b}
}

// ociArchive lays out an archive as buildah's `push oci-archive:` does: oci-layout, the blobs,
// index.json last. index is given the manifest's digest.
func ociArchive(t *testing.T, index func(manifestDigest string) string, blobs ...[]byte) (*bytes.Buffer, []byte, []byte, []byte) {
	t.Helper()
	layer := bytes.Repeat([]byte("layer bytes "), 200_000) // over smallBlob: streamed, not held
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/local/bin/pathtrace"]},"rootfs":{"type":"layers","diff_ids":["` + digestOf(layer) + `"]}}`)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digestOf(config) + `","size":1},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digestOf(layer) + `","size":1}]}`)
	entries := []entry{{"oci-layout", []byte(`{"imageLayoutVersion": "1.0.0"}`)}, blobEntry(layer), blobEntry(manifest), blobEntry(config)}
	for _, b := range blobs {
		entries = append(entries, blobEntry(b))
	}
	entries = append(entries, entry{"index.json", []byte(index(digestOf(manifest)))})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, layer, config, manifest
}

func oneManifest(d string) string {
	return `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d +
		`","size":503,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"localhost/pathtrace:dev"}}]}`
}

func readAll(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := files[hdr.Name]; dup {
			t.Errorf("%s is twice in the archive", hdr.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = b
	}
}

func TestConvertNamesTheImageForEveryLoader(t *testing.T) {
	in, layer, config, manifest := ociArchive(t, oneManifest)
	var out bytes.Buffer
	if err := Convert(in, &out, "registry.example:5000/team/pathtrace:v1.2"); err != nil {
		t.Fatal(err)
	}
	files := readAll(t, &out)

	// The blobs are untouched: the image's digest is the same after as before.
	for _, b := range [][]byte{layer, config, manifest} {
		e := blobEntry(b)
		if !bytes.Equal(files[e.name], b) {
			t.Errorf("%s changed", e.name)
		}
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion": "1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}

	var idx struct {
		SchemaVersion int `json:"schemaVersion"`
		Manifests     []struct {
			Digest      string            `json:"digest"`
			Size        int               `json:"size"`
			Platform    map[string]string `json:"platform"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if idx.SchemaVersion != 2 || len(idx.Manifests) != 1 {
		t.Fatalf("index.json = %s", files["index.json"])
	}
	m := idx.Manifests[0]
	if m.Digest != digestOf(manifest) || m.Size != 503 || m.Platform["os"] != "linux" {
		t.Errorf("index entry lost fields: %s", files["index.json"])
	}
	if got := m.Annotations["io.containerd.image.name"]; got != "registry.example:5000/team/pathtrace:v1.2" {
		t.Errorf("io.containerd.image.name = %q", got)
	}
	if got := m.Annotations["org.opencontainers.image.ref.name"]; got != "v1.2" {
		t.Errorf("org.opencontainers.image.ref.name = %q, want the tag alone", got)
	}

	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(docker) != 1 || docker[0].Config != blobEntry(config).name ||
		len(docker[0].RepoTags) != 1 || docker[0].RepoTags[0] != "registry.example:5000/team/pathtrace:v1.2" ||
		len(docker[0].Layers) != 1 || docker[0].Layers[0] != blobEntry(layer).name {
		t.Errorf("manifest.json = %s", files["manifest.json"])
	}
	// Every path manifest.json names is in the archive.
	for _, p := range append([]string{docker[0].Config}, docker[0].Layers...) {
		if _, ok := files[p]; !ok {
			t.Errorf("manifest.json names %s, which is not in the archive", p)
		}
	}
}

func TestConvertRefusesWhatItCannotName(t *testing.T) {
	twoManifests := func(d string) string {
		return `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d +
			`"},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d + `"}]}`
	}
	anIndex := func(d string) string {
		return `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"` + d + `"}]}`
	}
	missing := func(string) string {
		return oneManifest(digestOf([]byte("not in the archive")))
	}
	for _, c := range []struct {
		name, image string
		index       func(string) string
		want        string
	}{
		{"two images", "localhost/pathtrace:dev", twoManifests, "2 manifests"},
		{"an index", "localhost/pathtrace:dev", anIndex, "want an image manifest"},
		{"manifest missing", "localhost/pathtrace:dev", missing, "not in the archive"},
		{"no tag", "localhost/pathtrace", oneManifest, "want REPOSITORY:TAG"},
		{"port, no tag", "localhost:5000/pathtrace", oneManifest, "want REPOSITORY:TAG"},
		{"empty tag", "localhost/pathtrace:", oneManifest, "want REPOSITORY:TAG"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, _, _, _ := ociArchive(t, c.index)
			err := Convert(in, io.Discard, c.image)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Convert = %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestConvertChecksTheManifestDigest(t *testing.T) {
	// An index pointing at a blob whose content does not hash to its name.
	in, _, _, manifest := ociArchive(t, oneManifest)
	raw := in.Bytes()
	i := bytes.Index(raw, manifest)
	raw[i+len(manifest)-2] = ' ' // still JSON-ish, no longer the digested bytes
	err := Convert(bytes.NewReader(raw), io.Discard, "localhost/pathtrace:dev")
	if err == nil || !strings.Contains(err.Error(), "has digest") {
		t.Errorf("Convert = %v, want a digest mismatch", err)
	}
}

func TestConvertNeedsAnIndex(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("[]"))
	_ = tw.Close()
	err := Convert(&buf, io.Discard, "localhost/pathtrace:dev")
	if err == nil || !strings.Contains(err.Error(), "no index.json") {
		t.Errorf("Convert = %v, want: no index.json", err)
	}
	if err := Convert(strings.NewReader("not a tar archive at all, just text"), io.Discard, "localhost/pathtrace:dev"); err == nil {
		t.Error("Convert accepted text")
	}
}
