#!/bin/sh
# Boot 1: disko's zfs-encrypted-root example for this VM's disk, installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_disko zfs-encrypted-root --device root=/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_k0
install_planned
