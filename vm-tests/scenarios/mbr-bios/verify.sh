#!/bin/sh
# Boot 2: mounted and checked as every layout, and beyond it the table as sfdisk reads it, and that this
# boot has no EFI.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
sfdisk --dump /dev/disk/by-id/virtio-disk0 > /host/out/sfdisk.txt
sfdisk --verify /dev/disk/by-id/virtio-disk0 > /host/out/sfdisk-verify.txt 2>&1 || true
if [ -d /sys/firmware/efi ]; then echo efi; else echo bios; fi > /host/out/firmware.txt
unmount_after_verify
