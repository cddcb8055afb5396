# pathtrace's container image: the static binary on an empty base, for nodes and debug pods
#   docker build -t pathtrace:dev .        (or: podman build, buildah bud, kaniko...)
# It needs a registry for the golang image. Without one, `make image` builds the binary here
# and puts the same final stage FROM scratch (deploy/Containerfile.prebuilt).
# pathtrace needs no other file at run time: nftables is spoken through netlink, BTF and /proc
# are the node's. Only --json needs a writable directory: /tmp.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION is what `pathtrace --version` prints (the context has no .git to stamp), IMAGE the
# name this image is tagged with (`pathtrace version` prints it; internal/buildinfo).
ARG VERSION=devel
ARG IMAGE=localhost/pathtrace:dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
		-X github.com/pathtrace/pathtrace/internal/buildinfo.version=${VERSION} \
		-X github.com/pathtrace/pathtrace/internal/buildinfo.image=${IMAGE}" \
		-o /rootfs/usr/local/bin/pathtrace ./cmd/pathtrace \
	&& mkdir -m 1777 /rootfs/tmp

# Keep in step with deploy/Containerfile.prebuilt (a test compares the two).
FROM scratch
COPY --from=build /rootfs/ /
ENTRYPOINT ["/usr/local/bin/pathtrace"]
