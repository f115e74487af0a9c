#!/bin/sh
# Boot 1: two disks partitioned by hand, an encrypted ZFS mirror on them, a file written into it.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
say "partitioning by hand"
for d in /dev/disk/by-id/virtio-h0 /dev/disk/by-id/virtio-h1; do
    sgdisk -Z -n1:1M:+512M -t1:EF00 -n2:0:0 -t2:BF01 "$d" >/dev/null
done
udevadm settle
printf '%s' "$(cat /host/passphrase)" | zpool create -f -o ashift=12 -O encryption=aes-256-gcm \
    -O keyformat=passphrase -O keylocation=prompt -O pbkdf2iters=100000 -O mountpoint=none -R /mnt \
    tank mirror /dev/disk/by-id/virtio-h0-part2 /dev/disk/by-id/virtio-h1-part2
zfs create -o mountpoint=legacy tank/data
mount -t zfs tank/data /mnt
echo "written in boot 1" > /mnt/hello.txt
umount /mnt
zpool export tank
