// Package buildinfo is what a build of pathtrace says about itself: its version, and the
// container image that holds the same build, which kubectl-pathtrace runs on the nodes.
//
// Both are set at link time, by the Makefile (make build, make kubectl-pathtrace, make krew),
// scripts/image.sh and the Dockerfile:
//
//	-ldflags "-X github.com/pathtrace/pathtrace/internal/buildinfo.version=v0.2.0
//	          -X github.com/pathtrace/pathtrace/internal/buildinfo.image=ghcr.io/pathtrace/pathtrace:v0.2.0"
//
// A plain `go build` gets the VCS revision Go stamps, and DevImage.
package buildinfo

import "runtime/debug"

// LDFlagPrefix is how -X names this package's variables.
const LDFlagPrefix = "github.com/pathtrace/pathtrace/internal/buildinfo."

// DevImage is the image a build that was not told its own is paired with: the one `make image`
// builds by default.
const DevImage = "localhost/pathtrace:dev"

// Set with -ldflags -X (see the package comment).
var version, image string

// Image is the container image of this build: what kubectl-pathtrace's --image defaults to.
func Image() string {
	if image != "" {
		return image
	}
	return DevImage
}

// Version is the link-time version, else the VCS revision Go stamped into the binary (with
// -dirty), else "devel".
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
