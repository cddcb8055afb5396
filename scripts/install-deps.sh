#!/usr/bin/env bash
# Installs what building, generating and testing pathtrace need, from Debian's packages.
# Idempotent: a package already installed is not fetched again.
set -euo pipefail

pkgs=(
	clang-19 llvm-19 libbpf-dev  # make generate: the pinned BPF compiler and libbpf's headers
	iproute2 iputils-ping        # README examples and manual checks
	nftables iptables            # manual checks of the netfilter scenarios (tests use netlink)
	bpftool                      # tests list the kernel's BPF objects to prove nothing is left behind
	containerd runc              # internal/kube/cri's TestContainerd runs real pod sandboxes (CRI v1)
	containernetworking-plugins  # internal/kubetest's node: the bridge and host-local CNI plugins
	tshark                       # --pcapng's tests read the captures with Wireshark's dissectors
	chromium                     # render/svg's tests look at the picture as a browser draws it
	make git ca-certificates
)

. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${pkgs[@]}"

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null || { echo "install-deps: Go is not installed (need Go $(sed -n 's/^go //p' go.mod))" >&2; exit 1; }
go mod download

# make lint: staticcheck, pinned, in GOPATH's bin where the Makefile looks for it. Skipped when
# that version is already there.
staticcheck_version=v0.8.2
gobin="$(go env GOPATH | cut -d: -f1)/bin"
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -qF "(${staticcheck_version#v})"; then
	# GOFLAGS cleared: a -mod=vendor or the like set for this repo must not reach an install @version.
	GOBIN="$gobin" GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
