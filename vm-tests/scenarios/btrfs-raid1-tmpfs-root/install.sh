#!/bin/sh
# Boot 1: the scenario's plan.toml installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_file /host/scenario/plan.toml
install_planned
