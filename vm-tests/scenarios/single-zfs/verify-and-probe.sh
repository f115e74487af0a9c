#!/bin/sh
# Boot 2: mounted and checked as every layout; then, everything released, the disk read back with its
# pool (imported read-only to be read, exported again), reviewed, refused under another GUID, and
# applied.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
unmount_after_verify

nix-dabei probe /dev/disk/by-id/virtio-s0 -o /host/out/probed.toml 2> /host/out/probe-notes.txt
zpool list -H -o name > /host/out/pools-after-probe.txt
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
sed 's/^guid = .*/guid = "12345"/' /host/out/probed.toml > /tmp/other-guid.toml
nix-dabei apply /tmp/other-guid.toml --json > /host/out/other-guid.jsonl 2>&1 || true
nix-dabei apply /host/out/probed.toml --json > /host/out/probed-apply.jsonl
zfs get -H -p -o name,value guid -r rpool > /host/out/guids-after-probed-apply.txt
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
