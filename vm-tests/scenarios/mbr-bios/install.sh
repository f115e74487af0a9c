#!/bin/sh
# Boot 1: the example plan layouts/example-plans/mbr-bios.toml as it is, for the stand-in flake.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
sed 's|^flake = .*|flake = "path:/etc/nixos#vm"|' /host/scenario/mbr-bios.toml > /tmp/mbr-bios.toml
plan_file /tmp/mbr-bios.toml
install_planned
