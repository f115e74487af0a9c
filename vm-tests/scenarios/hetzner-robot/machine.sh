#!/bin/sh
# The one machine of the scenario (lib/remote-machine.sh), a dedicated server of the stand-in Robot: it
# answers only once Robot has been asked for its rescue system and a reset, and root's key is then the
# one the rescue system was given (out/created, written by the host).
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck disable=SC2034 # read by the sourced script
root_key=/host/out/created wrong_key_first=0 reset_to_rescue=0
# shellcheck source=SCRIPTDIR/../lib/remote-machine.sh
. /host/lib/remote-machine.sh
