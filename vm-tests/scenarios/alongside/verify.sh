#!/bin/sh
# Boot 2: mounted and checked as every layout, and while the installed system is mounted, the other
# system's files.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
d=/dev/disk/by-id/virtio-a0
cat /mnt/boot/EFI/Microsoft/Boot/bootmgfw.efi > /host/out/bootmgr.txt
ls /mnt/boot > /host/out/esp-listing.txt
sha256sum "$d-part2" "$d-part3" | cut -d' ' -f1 > /host/out/foreign-after.txt
unmount_after_verify
