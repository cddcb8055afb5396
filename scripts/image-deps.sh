#!/usr/bin/env bash
# Installs what `make image` and `make image-test` need, from Debian's packages: buildah
# builds the image FROM scratch (no registry is needed) and writes the OCI archive; podman and
# containerd load it and run it, as a workstation and a Kubernetes node would.
# Idempotent: a package already installed is not fetched again.
set -euo pipefail

pkgs=(
	buildah    # builds deploy/Containerfile.prebuilt, writes the OCI archive
	podman     # image-test: loads the archive, runs it privileged with host network and PID
	runc       # the OCI runtime podman and containerd run it with
	containerd # image-test: ctr -n k8s.io images import and ctr run, as on a Kubernetes node
)

. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${pkgs[@]}"
