package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

const (
	// containerdNameAnnotation is where `ctr images import`, `docker load` (25 and later) and
	// `podman load` look first for an OCI archive's image name.
	containerdNameAnnotation = "io.containerd.image.name"
	// refNameAnnotation is the OCI spec's name: the tag alone.
	refNameAnnotation = "org.opencontainers.image.ref.name"
	ociManifestType   = "application/vnd.oci.image.manifest.v1+json"
	// smallBlob: manifests and configs are kept in memory to be read; layers stream through.
	smallBlob = 1 << 20
)

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
}

// dockerManifest is one entry of `docker save`'s manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Convert copies the OCI archive in to out with the image named name (REPOSITORY:TAG) the way
// every loader reads it. The archive must hold exactly one image manifest.
func Convert(in io.Reader, out io.Writer, name string) error {
	tag, err := tagOf(name)
	if err != nil {
		return err
	}
	tr := tar.NewReader(in)
	tw := tar.NewWriter(out)
	small := map[string][]byte{} // blobs/sha256/<hex> -> content, for blobs up to smallBlob
	var index []byte
	var mtime time.Time
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		p := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if hdr.ModTime.After(mtime) {
			mtime = hdr.ModTime
		}
		switch {
		case p == "index.json":
			if index, err = io.ReadAll(io.LimitReader(tr, smallBlob)); err != nil {
				return fmt.Errorf("read index.json: %w", err)
			}
			continue // written last, named
		case p == "manifest.json":
			continue // written anew from the index
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		var body io.Reader = tr
		if hdr.Typeflag == tar.TypeReg && hdr.Size <= smallBlob && strings.HasPrefix(p, "blobs/") {
			b, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			small[p] = b
			body = bytes.NewReader(b)
		}
		if _, err := io.Copy(tw, body); err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
	}
	if index == nil {
		return errors.New("no index.json: not an OCI archive")
	}
	newIndex, docker, err := namedIndex(index, small, name, tag)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{"index.json", newIndex}, {"manifest.json", docker}} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: mtime, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// name2 returns the index with the image's name annotations and the Docker manifest.json.
func namedIndex(index []byte, blobs map[string][]byte, name, tag string) ([]byte, []byte, error) {
	var idx map[string]json.RawMessage
	if err := json.Unmarshal(index, &idx); err != nil {
		return nil, nil, fmt.Errorf("index.json: %w", err)
	}
	var entries []map[string]any
	if err := json.Unmarshal(idx["manifests"], &entries); err != nil {
		return nil, nil, fmt.Errorf("index.json manifests: %w", err)
	}
	if len(entries) != 1 {
		return nil, nil, fmt.Errorf("index.json lists %d manifests, want exactly one image", len(entries))
	}
	e := entries[0]
	if mt, _ := e["mediaType"].(string); mt != ociManifestType {
		return nil, nil, fmt.Errorf("index.json: the entry is a %q, want an image manifest (%s)", mt, ociManifestType)
	}
	digest, _ := e["digest"].(string)
	raw, err := blob(blobs, digest)
	if err != nil {
		return nil, nil, fmt.Errorf("image manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("image manifest %s: %w", digest, err)
	}
	if _, err := blob(blobs, m.Config.Digest); err != nil {
		return nil, nil, fmt.Errorf("image config: %w", err)
	}
	ann, _ := e["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	ann[containerdNameAnnotation] = name
	ann[refNameAnnotation] = tag
	e["annotations"] = ann
	if idx["manifests"], err = json.Marshal(entries); err != nil {
		return nil, nil, err
	}
	newIndex, err := json.Marshal(idx)
	if err != nil {
		return nil, nil, err
	}
	dm := dockerManifest{Config: blobPath(m.Config.Digest), RepoTags: []string{name}}
	for _, l := range m.Layers {
		if blobPath(l.Digest) == "" {
			return nil, nil, fmt.Errorf("layer digest %q is not sha256:<hex>", l.Digest)
		}
		dm.Layers = append(dm.Layers, blobPath(l.Digest))
	}
	docker, err := json.Marshal([]dockerManifest{dm})
	if err != nil {
		return nil, nil, err
	}
	return newIndex, docker, nil
}

// blob returns a small blob's content, checked against its digest.
func blob(blobs map[string][]byte, digest string) ([]byte, error) {
	p := blobPath(digest)
	if p == "" {
		return nil, fmt.Errorf("digest %q is not sha256:<hex>", digest)
	}
	b, ok := blobs[p]
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the archive", digest)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return nil, fmt.Errorf("blob %s has digest %s", digest, got)
	}
	return b, nil
}

func blobPath(digest string) string {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return ""
	}
	return "blobs/sha256/" + hexPart
}

// tagOf returns the tag of REPOSITORY:TAG; the colon of a registry's port does not count.
func tagOf(name string) (string, error) {
	i := strings.LastIndex(name, ":")
	if i < 0 || i < strings.LastIndex(name, "/") || i == len(name)-1 || i == 0 {
		return "", fmt.Errorf("image name %q: want REPOSITORY:TAG (localhost/pathtrace:dev)", name)
	}
	return name[i+1:], nil
}
