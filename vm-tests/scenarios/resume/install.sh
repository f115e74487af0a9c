#!/bin/sh
# Boot 1: the install resumed on the plan of boot 1, which was interrupted.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
test "$(cat /host/out/interrupted)" = "about to lose power"
install_planned
