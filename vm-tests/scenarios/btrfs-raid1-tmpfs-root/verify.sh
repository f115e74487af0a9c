#!/bin/sh
# Boot 2: mounted and checked as every layout, and beyond it the btrfs's devices and
# profiles, and that / came back empty.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
btrfs filesystem show /dev/mapper/crypt0 > /host/out/btrfs-show.txt
btrfs filesystem df /mnt/home > /host/out/btrfs-df.txt
btrfs subvolume list /mnt/home > /host/out/btrfs-subvolumes.txt
btrfs subvolume show /mnt/home/shared > /host/out/btrfs-nested.txt
ls -A /mnt > /host/out/root-listing.txt
unmount_after_verify
