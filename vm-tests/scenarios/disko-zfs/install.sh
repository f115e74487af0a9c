#!/bin/sh
# Boot 1: disko's zfs example for this VM's two disks, installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_disko zfs --device x=/dev/disk/by-id/virtio-z0 --device y=/dev/disk/by-id/virtio-z1
install_planned
