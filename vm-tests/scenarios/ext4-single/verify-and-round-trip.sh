#!/bin/sh
# Boot 2: mounted and checked as every layout; then, once everything is unmounted again, the installed
# disk read back (probe), written as a disko configuration, read from it (import-disko, evaluated with
# nix-instantiate here), and reviewed and mounted on the machine.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
unmount_after_verify

nix-dabei probe /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_e0 --passphrase-file /host/passphrase \
    -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/mapper > /host/out/mappers-after-probe.txt
nix-dabei export-disko /host/out/probed.toml -o /host/out/probed.nix
nix-dabei import-disko /host/out/probed.nix -o /host/out/imported.toml 2> /host/out/import-warnings.txt
nix-dabei apply /host/out/imported.toml --review-only --json > /host/out/imported-review.json
nix-dabei mount /host/out/imported.toml --passphrase-file /host/passphrase --json > /host/out/imported-mount.jsonl
nix-dabei unmount /host/out/imported.toml --json > /host/out/imported-unmount.jsonl
