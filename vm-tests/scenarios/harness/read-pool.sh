#!/bin/sh
# Boot 2: the pool imported and unlocked from scratch; the file and the pool's state reported.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
zpool import -N -R /mnt tank
zfs load-key -L file:///host/passphrase tank
mount -t zfs tank/data /mnt
cat /mnt/hello.txt > /host/out/hello.txt
zpool status -j --json-int tank > /host/out/zpool-status.json
zfs get -j -p all tank/data > /host/out/zfs-get.json
umount /mnt
zpool export tank
