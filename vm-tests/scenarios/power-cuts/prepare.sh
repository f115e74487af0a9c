#!/bin/sh
# Boot 1: a disk outside the plan gets someone else's LUKS header and an exported pool named like the
# plan's, then the plan is made.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
F=/dev/disk/by-id/virtio-f0
/usr/sbin/sgdisk -n1:0:+32M -n2:0:0 $F > /dev/null
udevadm settle
printf 'not ours' | /usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 \
    --pbkdf-force-iterations 1000 --key-file - ${F}-part1
zpool create -f -o ashift=12 -O mountpoint=none rpool ${F}-part2
zpool export rpool
sha256sum $F | cut -d' ' -f1 > /host/out/foreign-before
nix-dabei plan --preset mirror --encrypt luks --disk /dev/disk/by-id/virtio-c0 --disk /dev/disk/by-id/virtio-c1 \
    --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt
