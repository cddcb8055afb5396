#!/usr/bin/env bash
# `make image`: pathtrace's container image, built without a registry. The static binary is
# built as the Dockerfile builds it, put FROM scratch by buildah (deploy/Containerfile.prebuilt)
# in a throwaway storage, and written to bin/pathtrace-image.tar: an OCI archive that also
# carries Docker's manifest.json and containerd's name annotation (deploy/imagetar), so
# `docker load`, `podman load` and `ctr -n k8s.io images import` all load it as $IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
IMAGE=${IMAGE:-localhost/pathtrace:dev}
IMAGE_TAR=${IMAGE_TAR:-bin/pathtrace-image.tar}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo devel)}

./scripts/image-deps.sh

ctx=bin/image
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin"
install -d -m 1777 "$ctx/rootfs/tmp" # scratch has no /tmp, and --json needs a writable place
buildinfo=github.com/pathtrace/pathtrace/internal/buildinfo
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $buildinfo.version=$VERSION -X $buildinfo.image=$IMAGE" \
	-o "$ctx/rootfs/usr/local/bin/pathtrace" ./cmd/pathtrace

# A storage of its own (vfs: no overlay or fuse needed) keeps the build away from the host's
# images and leaves nothing behind but the archive.
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
buildah=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
"${buildah[@]}" bud --quiet -f deploy/Containerfile.prebuilt -t "$IMAGE" "$ctx" >/dev/null
"${buildah[@]}" push --quiet "$IMAGE" "oci-archive:$store/oci.tar:$IMAGE"
go run ./deploy/imagetar -name "$IMAGE" -in "$store/oci.tar" -out "$IMAGE_TAR"
echo "image: $IMAGE ($VERSION) in $IMAGE_TAR, $(du -h "$IMAGE_TAR" | cut -f1)"
echo "load it with: podman load -i $IMAGE_TAR | docker load -i $IMAGE_TAR | ctr -n k8s.io images import $IMAGE_TAR"
