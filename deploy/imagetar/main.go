// Command imagetar names an OCI image archive for every loader: buildah writes an OCI archive
// whose only name is the OCI ref.name annotation, which `podman load` reads but
// `ctr images import` prefixes with a made-up base name and older `docker load`s cannot read
// at all. imagetar adds what `docker save` and `ctr export` write for that reason: the
// containerd image-name annotation in index.json and a Docker manifest.json pointing at the
// same blobs. The blobs are copied unchanged, so the image's digest stays the same.
//
//	imagetar -name localhost/pathtrace:dev -in oci.tar -out bin/pathtrace-image.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	name := flag.String("name", "", "the image's name with its tag (localhost/pathtrace:dev)")
	in := flag.String("in", "", "the OCI archive to read (buildah push ... oci-archive:FILE)")
	out := flag.String("out", "", "the archive to write")
	flag.Parse()
	if *name == "" || *in == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: imagetar -name NAME:TAG -in OCI.tar -out IMAGE.tar")
		os.Exit(2)
	}
	if err := convertFile(*in, *out, *name); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar: "+err.Error())
		os.Exit(1)
	}
}

// convertFile writes out through a temporary file, so a failed run leaves no half archive
// that a later `docker load` would take for the image.
func convertFile(inPath, outPath, name string) error {
	in, err := os.Open(inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(outPath), ".imagetar-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Convert(in, tmp, name); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", inPath, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), outPath)
}
