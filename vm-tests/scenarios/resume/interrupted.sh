#!/bin/sh
# Boot 1: the power goes off right after the pool is created.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-r0 --disk /dev/disk/by-id/virtio-r1 \
    --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt
echo "about to lose power" > /host/out/interrupted
nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
NIX_DABEI_TEST_POWER_OFF_AFTER=zpool-create:rpool nix-dabei apply /host/plan.toml --yes-wipe-all \
    --passphrase-file /host/passphrase --json > /host/out/apply0.jsonl
echo "the power did not go off" > /host/out/interrupted
