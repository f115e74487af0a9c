#!/bin/sh
# Boot 3: the install finished on the plan made in boot 1 (nothing or little is left to do), checked as
# every install; then the disk outside the plan is read again.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
install_planned

sha256sum /dev/disk/by-id/virtio-f0 | cut -d' ' -f1 > /host/out/foreign-after
zpool import > /host/out/importable.txt 2>&1 || true
