#!/usr/bin/env bash
# `make krew`: kubectl-pathtrace's release archives and the krew manifest that names them.
# For each platform of deploy/krew/pathtrace.yaml (linux and darwin, amd64 and arm64) it
# cross-builds the plugin (CGO_ENABLED=0, stamped with VERSION and IMAGE: internal/buildinfo),
# packs it into kubectl-pathtrace_OS_ARCH.tar.gz, and writes $KREW_OUT/pathtrace.yaml: the
# manifest with the version filled in and each archive's sha256. The archives are reproducible
# (-trimpath, sorted tar entries with fixed owner and time, gzip -n): the same tree, Go and
# VERSION give the same sha256.
#
# The manifest's URLs are where a release would publish the archives
# (https://github.com/pathtrace/pathtrace/releases/download/VERSION/...); nothing is uploaded.
# Try it before a release with:
#   kubectl krew install --manifest=bin/krew/pathtrace.yaml --archive=bin/krew/kubectl-pathtrace_linux_amd64.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
IMAGE=${IMAGE:-localhost/pathtrace:dev}
KREW_OUT=${KREW_OUT:-bin/krew}
template=deploy/krew/pathtrace.yaml
buildinfo=github.com/pathtrace/pathtrace/internal/buildinfo

# krew wants a semantic version with a leading v.
if ! [[ $VERSION =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$ ]]; then
	echo "krew: VERSION must be a semantic version like v0.2.0 (got '$VERSION'): make krew VERSION=v0.2.0" >&2
	exit 1
fi

mkdir -p "$KREW_OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A sums
for platform in $(sed -n 's/.*matchLabels: {os: \([a-z0-9]*\), arch: \([a-z0-9]*\)}.*/\1_\2/p' "$template"); do
	os=${platform%_*} arch=${platform#*_}
	name=kubectl-pathtrace_${os}_${arch}.tar.gz
	mkdir -p "$work/$platform"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -buildvcs=false \
		-ldflags "-s -w -X $buildinfo.version=$VERSION -X $buildinfo.image=$IMAGE" \
		-o "$work/$platform/kubectl-pathtrace" ./cmd/kubectl-pathtrace
	tar -C "$work/$platform" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
		--mode='u+rwX,go+rX,go-w' -cf - kubectl-pathtrace | gzip -n -9 >"$KREW_OUT/$name"
	sums[$name]=$(sha256sum "$KREW_OUT/$name" | cut -d' ' -f1)
	echo "krew: $KREW_OUT/$name ${sums[$name]}"
done

# The template with the version and each archive's sha256 (the line after its uri).
manifest=$KREW_OUT/pathtrace.yaml
archive=""
while IFS= read -r line; do
	case $line in
	*"uri: "*)
		archive=${line##*/}
		line=${line//v0.0.0/$VERSION}
		;;
	*"sha256: "*)
		[ -n "${sums[$archive]:-}" ] || { echo "krew: no archive built for $archive" >&2; exit 1; }
		line="${line%%sha256:*}sha256: \"${sums[$archive]}\""
		;;
	*"version: v0.0.0"*)
		line=${line/v0.0.0/$VERSION}
		;;
	"# krew plugin manifest: the template"*)
		line="# krew plugin manifest of kubectl-pathtrace $VERSION (its --image: $IMAGE), written by make krew."
		;;
	"# uri and sha256"*)
		line="# The URLs are where the release would publish the archives; sha256 are those make krew built."
		;;
	esac
	printf '%s\n' "$line"
done <"$template" >"$manifest.tmp"
mv "$manifest.tmp" "$manifest"
echo "krew: $manifest ($VERSION; the URLs are where the release would publish the archives)"
