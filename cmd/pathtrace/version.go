package main

import "runtime/debug"

// version is set at link time by `make image` and the Dockerfile
// (-ldflags "-X main.version=..."), so an image says which commit it was built from even
// though its build context has no .git to stamp.
var version string

// versionString is what --version prints: the link-time version, else the VCS revision Go
// stamped into the binary, else "devel".
func versionString() string {
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
