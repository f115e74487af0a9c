#!/bin/sh
# The second boot of a layout scenario that checks nothing beyond the usual (lib/verify.sh).
# shellcheck source=SCRIPTDIR/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/verify.sh
. /host/lib/verify.sh
verify_mounted
unmount_after_verify
