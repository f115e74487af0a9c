#!/bin/sh
# Boot 1: the preset planned for this machine's disk and installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_preset --preset ext4 --encrypt luks --swap 256M --disk /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_e0
install_planned
