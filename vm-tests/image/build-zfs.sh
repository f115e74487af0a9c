#!/usr/bin/env bash
# Builds the ZFS kernel modules (zfs.ko, spl.ko) for the VM's Debian kernel from Debian's zfs-dkms source,
# once per kernel and ZFS version; prints the folder holding them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

kver=$(kernel_abi)
kernel_version=$(candidate_version "linux-image-$kver")
zfs_version=$(candidate_version zfs-dkms/bookworm-backports)
script_hash=$(cat "$here/build-zfs.sh" "$here/common.sh" | sha256sum | cut -c1-12)
out="$cache_root/zfs-$kver-$kernel_version-$zfs_version-$script_hash"
if [ -f "$out/zfs.ko" ] && [ -f "$out/spl.ko" ]; then
    echo "$out"
    exit 0
fi

if [ ! -d "/lib/modules/$kver/build" ]; then
    echo "build-zfs: linux-headers-$kver is not installed (run scripts/setup)" >&2
    exit 1
fi
work=$(mktemp -d "$cache_root/zfs-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
deb=$(fetch_deb zfs-dkms/bookworm-backports)
dpkg-deb -x "$deb" "$work/pkg"
src=$(ls -d "$work"/pkg/usr/src/zfs-*)
start=$(date +%s)
echo "build-zfs: building ZFS $zfs_version's kernel modules for $kver, once (4-7 minutes on 2 cores)" >&2
# A line every 30 s while it builds, so that a long silence does not look like a hang.
( while sleep 30; do echo "build-zfs: still building ($(( $(date +%s) - start )) s)" >&2; done ) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true; rm -rf "$work"' EXIT
(
    cd "$src"
    echo "build-zfs: configure" >&2
    ./configure --with-config=kernel --with-linux="/lib/modules/$kver/source" \
        --with-linux-obj="/lib/modules/$kver/build" >"$work/configure.log" 2>&1 ||
        { tail -n 40 "$work/configure.log" >&2; exit 1; }
    echo "build-zfs: make ($(( $(date +%s) - start )) s)" >&2
    make -s -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
)
kill "$ticker" 2>/dev/null || true
mkdir -p "$out.tmp"
find "$src" -name zfs.ko -exec cp {} "$out.tmp/zfs.ko" \;
find "$src" -name spl.ko -exec cp {} "$out.tmp/spl.ko" \;
strip --strip-debug "$out.tmp/zfs.ko" "$out.tmp/spl.ko"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "build-zfs: done in $(( $(date +%s) - start )) s" >&2
echo "$out"
