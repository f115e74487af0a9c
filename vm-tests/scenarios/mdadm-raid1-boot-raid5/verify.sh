#!/bin/sh
# Boot 2: mounted and checked as every layout, and beyond it the arrays' levels and members and
# each ESP half read as FAT on its own; then, everything released (the arrays stopped), the disks read
# back with their arrays (assembled read-only to be read, stopped again), reviewed, refused under another
# array UUID, and applied.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
mdadm --detail --export /dev/md/boot > /host/out/md-boot.txt
mdadm --detail --export /dev/md/data > /host/out/md-data.txt
ls /dev/md > /host/out/md-links.txt
sgdisk -p /dev/md/data > /host/out/md-data-gpt.txt
sgdisk -v /dev/md/data > /host/out/md-data-verify.txt
for n in 0 1 2; do /usr/sbin/fsck.vfat -n /dev/disk/by-id/virtio-md$n-part2 > /dev/null; done
echo "every half reads as FAT" > /host/out/esp-halves.txt
unmount_after_verify

nix-dabei probe /dev/disk/by-id/virtio-md0 /dev/disk/by-id/virtio-md1 /dev/disk/by-id/virtio-md2 \
  -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/md > /host/out/md-after-probe.txt 2>&1 || true
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
awk '/^\[/ { boot = ($0 == "[raids.boot]") }
  boot && /^uuid = / { $0 = "uuid = \"0badcafe:00000000:00000000:00000001\"" } { print }' \
  /host/out/probed.toml > /tmp/other-uuid.toml
nix-dabei apply /tmp/other-uuid.toml --json > /host/out/other-uuid.jsonl 2>&1 || true
nix-dabei apply /host/out/probed.toml --json > /host/out/probed-apply.jsonl
mdadm --detail --export /dev/md/boot > /host/out/md-boot-after-probed-apply.txt
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
