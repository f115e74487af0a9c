#!/bin/sh
# Boot 1: the preset planned for this machine's disks and installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_preset --preset mirror --encrypt --disk /dev/disk/by-id/virtio-n0 \
    --disk /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_n1
install_planned
