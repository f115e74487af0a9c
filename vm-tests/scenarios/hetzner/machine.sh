#!/bin/sh
# The one machine of the scenario (lib/remote-machine.sh), a server of the stand-in Cloud API: it is
# "made" when the API has its key, and root's key is the one the API was given (out/created, written by
# the host then); the API's reset (--rescue) brings up a rescue system with a new host key.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck disable=SC2034 # read by the sourced script
root_key=/host/out/created wrong_key_first=0 reset_to_rescue=1
# shellcheck source=SCRIPTDIR/../lib/remote-machine.sh
. /host/lib/remote-machine.sh
