#!/bin/sh
# Boot 1: the preset planned for this machine's disks and installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_preset --preset mirror --disk /dev/disk/by-id/virtio-m0 --disk /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_m1
install_planned
