# pathtrace — see README.md.
GO ?= go
BIN := bin/pathtrace

.PHONY: all deps generate check-generated build test unit e2e demo lint vet clean

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
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/pathtrace

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

lint: vet
	@fmt=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$fmt" ] || { echo "gofmt needed: $$fmt" >&2; exit 1; }

clean:
	rm -rf bin
