#!/bin/sh
# Boot 1: the single-disk ZFS preset on the first disk.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_preset --preset single --disk /dev/disk/by-id/virtio-g0
install_planned
