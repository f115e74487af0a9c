#!/bin/sh
# Boot 2: the installed single-disk pool's plan, with a second disk added and the pool made a mirror and
# a dataset's compression changed (as a person edits it), applied: the new disk is partitioned, its
# partition attached, the property set.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
cp /host/plan.toml /host/plan-single.toml
sed 's/^mode = "stripe"$/mode = "mirror"/' /host/plan-single.toml > /host/plan.toml
cat >> /host/plan.toml <<'PLAN'

[disks.second]
device = "/dev/disk/by-id/virtio-g1"
size = 3221225472

[disks.second.partitions.esp]
size = "1G"
type = "esp"

[disks.second.partitions.esp.content.filesystem]
format = "vfat"
mountpoint = "/boot-1"
mount_options = ["umask=0077"]

[disks.second.partitions.zfs]
size = "rest"
type = "zfs"

[disks.second.partitions.zfs.content.zfs]
pool = "rpool"

[pools.rpool.datasets.home.properties]
compression = "lz4"
PLAN
nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
sha256sum /dev/disk/by-id/virtio-g0-part1 | cut -d' ' -f1 > /host/out/esp-before.txt
nix-dabei apply /host/plan.toml --review-only --json > /host/out/grow-review.json
say "growing the pool"
nix-dabei apply /host/plan.toml --yes-wipe second --keep-mounted --json > /host/out/grow-apply.jsonl
zpool wait -t resilver rpool
say "resilvered"
zpool status -j --json-int > /host/out/zpool-status-grown.json
cat /mnt/home/hello.txt > /host/out/hello-grown.txt
zfs get -H -o value compression rpool/home > /host/out/home-compression.txt
nix-dabei apply /host/plan.toml --json > /host/out/grow-again.jsonl
nix-dabei unmount /host/plan.toml --json > /host/out/unmount-grown.jsonl
sha256sum /dev/disk/by-id/virtio-g0-part1 | cut -d' ' -f1 > /host/out/esp-after.txt
