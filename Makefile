# pathtrace — see README.md.
GO ?= go
BIN := bin/pathtrace
PLUGIN := bin/kubectl-pathtrace

# What a build says it is (internal/buildinfo): `pathtrace --version`, `kubectl pathtrace
# --version`, and the image kubectl-pathtrace runs on the nodes by default (--image), which is
# the one `make image` builds. A release sets both: make krew VERSION=v0.2.0 (see krew below).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
IMAGE ?= localhost/pathtrace:dev
BUILDINFO := github.com/pathtrace/pathtrace/internal/buildinfo
BUILDINFO_LDFLAGS = -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).image=$(IMAGE)

.PHONY: all deps generate check-generated build kubectl-pathtrace krew test unit e2e demo lint vet clean fuzz race vmtest bench image image-test show-rss k8s-build k8s-up k8s-down k8s-test bench-micro

all: build

deps:
	./scripts/install-deps.sh

BPF_PKGS := ./bpf/... ./internal/lab/tcprog/...

# Regenerates the committed BPF objects (*_bpfel.{go,o}) with the pinned clang-19.
generate:
	$(GO) generate $(BPF_PKGS)

# Fails when the committed BPF objects are not what the sources produce.
check-generated: generate
	@git diff --exit-code --stat -- bpf/ internal/lab/tcprog/ || { echo "generated BPF files are stale: run 'make generate' and commit" >&2; exit 1; }

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(BUILDINFO_LDFLAGS)" -o $(BIN) ./cmd/pathtrace

# kubectl-pathtrace's release archives (linux and darwin, amd64 and arm64) and its krew manifest
# with their sha256, into $(KREW_OUT) (scripts/krew.sh). VERSION must be a release's (v0.2.0);
# the plugins default --image to RELEASE_IMAGE, the name the release's image would be published
# as (build it with make image IMAGE=...). The manifest's URLs are where the release would
# publish the archives.
KREW_OUT ?= bin/krew
RELEASE_IMAGE ?= ghcr.io/pathtrace/pathtrace:$(VERSION)
krew:
	GO=$(GO) VERSION=$(VERSION) IMAGE=$(RELEASE_IMAGE) KREW_OUT=$(KREW_OUT) ./scripts/krew.sh

# The kubectl plugin, for this machine: cp bin/kubectl-pathtrace somewhere on $$PATH.
kubectl-pathtrace:
	CGO_ENABLED=0 $(GO) build -ldflags "$(BUILDINFO_LDFLAGS)" -o $(PLUGIN) ./cmd/kubectl-pathtrace

# Everything: unit tests (no privileges) and the end-to-end suite (root: real namespaces and packets).
test: vet
	./scripts/test.sh

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -count=1 -v ./e2e/

demo: build
	./$(BIN) demo

vet:
	$(GO) vet ./...

# staticcheck is installed by `make deps` (scripts/install-deps.sh) into GOPATH's bin.
STATICCHECK = $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin/staticcheck

lint: vet
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$fmt" ] || { echo "gofmt needed: $$fmt" >&2; exit 1; }
	@[ -x "$(STATICCHECK)" ] || { echo "$(STATICCHECK) is missing: run make deps" >&2; exit 1; }
	$(STATICCHECK) ./...

# The userspace packages that need no root, under the race detector.
RACE_PKGS := ./trace/... ./render/... ./analysis/... ./tracer/ksym/...

race:
	$(GO) test -race -count=1 $(RACE_PKGS)

# Each fuzz target for a fixed number of executions, one after another (their seed corpora,
# testdata/fuzz/, also run as plain tests in `make unit`). A failing input is written to the
# package's testdata/fuzz/<target>/: fix the bug and commit it as a regression seed. New inputs
# that only widen coverage stay in the Go cache.
# Counts, not durations: Go 1.26's coordinator can fail a target that found nothing with
# "context deadline exceeded" when a -fuzztime duration ends under load (golang/go#75804, fixed
# in Go 1.27); a count has no deadline to race. Each count is about 5 s here on 2 busy cores.
# FUZZTIME=30s runs every target for that long instead (longer local runs; may meet that race).
# FUZZMINIMIZE caps the minimizing of each new input (likewise a count).
FUZZTIME ?=
FUZZMINIMIZE ?= 500x
FUZZ_TARGETS := \
	FuzzRead:./render/jsontrace:100000 \
	FuzzScan:./render/jsontrace:30000 \
	FuzzParseAddr:./trace:200000 \
	FuzzJSONIsV1:./trace:8000 \
	FuzzNewFilter:./trace:200000 \
	FuzzDecode:./tracer:60000 \
	FuzzReadEvents:./analysis/assemble:60000

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; budget=$${rest#*:}x; \
		if [ -n "$(FUZZTIME)" ]; then budget=$(FUZZTIME); fi; \
		echo "== $$name ($$pkg), $$budget"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$$budget -fuzzminimizetime=$(FUZZMINIMIZE) $$pkg; \
	done

clean:
	rm -rf bin

# End-to-end suite on Debian's cloud kernels under qemu (scripts/vmtest.sh; VMTEST_KERNELS=bookworm).
vmtest:
	./scripts/vmtest.sh $(VMTEST_ARGS)

# What pathtrace costs a node: iperf3 through a lab (pod -- node -- ext) with no tracer, with
# pathtrace filtering the traffic out, tracing it, and with bpftrace doing the same; attach,
# detach and drop-to-verdict times; userspace assembly speed. Root; how long and what it runs: bench/README.md.
bench: build
	./scripts/bench-deps.sh
	$(GO) build -o bin/bench ./bench
	./bin/bench -bin $(BIN) -go $(GO)

# Peak RSS of `pathtrace show` on a ~1 GB trace, /dev/zero and 300 MB non-traces (under 64 MB,
# or it fails), and of merge at its bound. No root; ~1.5 GB of $$TMPDIR; a minute or two.
show-rss:
	GO=$(GO) ./scripts/show-rss.sh

# Only the userspace micro-benchmarks of make bench and their targets: no lab, no root (~1 min).
bench-micro:
	$(GO) build -o bin/bench ./bench
	./bin/bench -micro-only -go $(GO)

# The container image without a registry (scripts/image.sh; the Dockerfile builds the same
# image where one is reachable): bin/pathtrace-image.tar, an OCI archive that docker load,
# podman load and ctr images import all take, named $(IMAGE). See deploy/README.md.
image:
	IMAGE=$(IMAGE) VERSION=$(VERSION) ./scripts/image.sh

# The image run for real (root): podman and containerd load it; --version and `pathtrace
# demo` inside a privileged container with the host's network and PID namespaces.
image-test: image
	IMAGE=$(IMAGE) ./scripts/image-test.sh

# A real single-node Kubernetes on this machine (internal/kubetest): etcd, kube-apiserver and a
# kubelet built from the Go module proxy into $$HOME/.cache/pathtrace-k8s (~7 min cold, once),
# Debian's containerd, the bridge CNI plugin, all on loopback. Root. k8s-down restores the host.
k8s-build:
	$(GO) run ./internal/kubetest/cmd/k8s-up build

k8s-up:
	$(GO) build -o bin/k8s-up ./internal/kubetest/cmd/k8s-up
	bin/k8s-up start

k8s-down:
	@if [ -x bin/k8s-up ]; then bin/k8s-up stop; else echo "k8s-up: not running"; fi

# The harness's own test and kubectl-pathtrace's end-to-end tests against it (root; builds
# Kubernetes first when it is not cached). Not part of make test.
k8s-test:
	$(GO) test -count=1 -p 1 -v ./internal/kubetest/... ./e2e/kube/
