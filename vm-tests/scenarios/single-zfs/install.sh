#!/bin/sh
# Boot 1: the preset planned; each bad flake (bad-flakes/*.nix, an override of the stand-in flake's
# configuration) given to apply and refused; then the install.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
plan_preset --preset single --swap 256M --disk /dev/disk/by-id/virtio-s0

layout_module
head -c 4194304 /dev/disk/by-id/virtio-s0 | sha256sum > /host/out/disk-before-bad-flakes
for n in 1 2 3 4; do
    mkdir -p /tmp/bad$n
    cp /etc/nixos/flake.nix /etc/nixos/nix-dabei.nix /tmp/bad$n/
    cp /host/scenario/bad-flakes/bad$n.nix /tmp/bad$n/override.nix
    if nix-dabei apply /host/plan.toml --flake "path:/tmp/bad$n#vm" --yes-wipe-all \
        --passphrase-file /host/passphrase > /host/out/bad-flake-$n.txt 2>&1; then
        echo "apply exited 0" >> /host/out/bad-flake-$n.txt
    fi
done
head -c 4194304 /dev/disk/by-id/virtio-s0 | sha256sum > /host/out/disk-after-bad-flakes

install_planned
