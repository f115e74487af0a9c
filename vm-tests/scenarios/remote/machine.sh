#!/bin/sh
# The one machine of the scenario (lib/remote-machine.sh): root's key is the test's from the start, and
# the RAM OS first shows a host key other than the carried one.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck disable=SC2034 # read by the sourced script
root_key=/host/test_key.pub wrong_key_first=1
# shellcheck source=SCRIPTDIR/../lib/remote-machine.sh
. /host/lib/remote-machine.sh
