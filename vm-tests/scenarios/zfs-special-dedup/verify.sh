#!/bin/sh
# Boot 2: mounted and checked as every layout, and beyond it the pool's layout as ZFS lists it, by
# section.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
zpool list -v -H -P tank > /host/out/zpool-list.txt
unmount_after_verify
