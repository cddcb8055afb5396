#!/usr/bin/env bash
# Installs what `make vmtest` needs on the host, from Debian's packages: qemu to boot the Debian
# cloud kernels (TCG, no KVM needed), dpkg-deb/apt-get to fetch and unpack them, xz and zstd to
# decompress their modules into the initramfs. Idempotent.
set -euo pipefail

pkgs=(
	qemu-system-x86 # the VM's libraries; on Debian 12 the runner itself fetches QEMU 10 from
	                # bookworm-backports into its cache (QEMU 7.2 crashes trixie's kernel)
	xz-utils zstd   # compressed modules (trixie: .ko.xz) are decompressed on the host
	debian-archive-keyring # verifies bullseye/bookworm/trixie Release files
	apt dpkg
)

. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install "${pkgs[@]}"
