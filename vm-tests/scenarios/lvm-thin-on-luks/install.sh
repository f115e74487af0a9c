#!/bin/sh
# Boot 1: the scenario's plan.toml installed, with a second key for one container.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
printf '%s' 'a second key' > /host/extra.key
plan_file /host/scenario/plan.toml
install_planned
