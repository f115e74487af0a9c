#!/bin/sh
# Boot 2: mounted and checked as every layout, and beyond it the volumes' kinds and the second
# key slot; then, everything released (the group inactive, the containers closed), the disks read back
# with the passphrase (containers opened, the group activated to be read, both undone), reviewed,
# refused under another group UUID, and applied.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/verify.sh
. /host/lib/verify.sh
verify_mounted
lvs --reportformat json -o lv_name,segtype,pool_lv,lv_active,lv_uuid,vg_uuid main > /host/out/lvs.json
pvs --reportformat json -o pv_name,vg_name > /host/out/pvs.json
# What the executor's LVM adapter reads, as it asks it: kept as its fixtures (installer/tests/fixtures).
pvs --reportformat json --units b --nosuffix -o pv_name,pv_uuid,vg_name,vg_uuid > /host/out/lvm-pvs.json
lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_uuid,lv_size,segtype,pool_lv \
  > /host/out/lvm-lvs.json
/usr/sbin/cryptsetup open --test-passphrase --key-file /host/extra.key /dev/disk/by-id/virtio-v1-part3
/usr/sbin/cryptsetup luksDump /dev/disk/by-id/virtio-v1-part3 > /host/out/luks-dump-v1.txt
unmount_after_verify

nix-dabei probe /dev/disk/by-id/virtio-v0 /dev/disk/by-id/virtio-v1 --passphrase-file /host/passphrase \
  -o /host/out/probed.toml 2> /host/out/probe-notes.txt
ls /dev/mapper > /host/out/mapper-after-probe.txt
nix-dabei apply /host/out/probed.toml --review-only --json > /host/out/probed-review.json
awk '/^\[/ { main = ($0 == "[volume_groups.main]") }
  main && /^uuid = / { $0 = "uuid = \"AAAAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAAAA\"" } { print }' \
  /host/out/probed.toml > /tmp/other-uuid.toml
nix-dabei apply /tmp/other-uuid.toml --passphrase-file /host/passphrase --json > /host/out/other-uuid.jsonl \
  2> /host/out/other-uuid.txt || true
nix-dabei unmount /tmp/other-uuid.toml --json > /dev/null 2>&1 || true
nix-dabei apply /host/out/probed.toml --passphrase-file /host/passphrase --json > /host/out/probed-apply.jsonl
lvs --reportformat json -o lv_name,lv_uuid,lv_active main > /host/out/lvs-after-probed-apply.json
nix-dabei unmount /host/out/probed.toml --json > /host/out/probed-unmount.jsonl
