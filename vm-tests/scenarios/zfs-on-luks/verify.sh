#!/bin/sh
# Boot 2: mounted and checked as every layout; then mounted again for the initrd host key the install
# generated.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
unmount_after_verify

nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /dev/null
stat -c '%a %U %n' /mnt/etc/secrets/initrd /mnt/etc/secrets/initrd/* > /host/out/initrd-keys.txt
ssh-keygen -l -f /mnt/etc/secrets/initrd/ssh_host_ed25519_key.pub >> /host/out/initrd-keys.txt
nix-dabei unmount /host/plan.toml --json > /dev/null
