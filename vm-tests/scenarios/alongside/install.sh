#!/bin/sh
# Boot 1: a disk as a Windows machine leaves it (an ESP with its boot manager, the system partition, free
# space, a recovery partition at the end; ext4 with a file stands in for NTFS), and a plan that installs
# the ext4 preset beside it; then the install.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
d=/dev/disk/by-id/virtio-a0
sgdisk -n1:1M:+300M -t1:EF00 -c1:"EFI system partition" -n2:0:+600M -t2:0700 -c2:"Basic data partition" \
    -n3:-200M:0 -t3:2700 "$d" > /dev/null
udevadm settle
mkfs.vfat -F 32 -n SYSTEM "$d-part1" > /dev/null
mkfs.ext4 -q -L windows "$d-part2"
mkdir -p /tmp/foreign
mount "$d-part1" /tmp/foreign
mkdir -p /tmp/foreign/EFI/Microsoft/Boot
echo "the other system's boot manager" > /tmp/foreign/EFI/Microsoft/Boot/bootmgfw.efi
umount /tmp/foreign
mount "$d-part2" /tmp/foreign
echo "the other system's files" > /tmp/foreign/document.txt
umount /tmp/foreign
dd if=/dev/urandom of="$d-part3" bs=1M count=8 status=none
sha256sum "$d-part2" "$d-part3" | cut -d' ' -f1 > /host/out/foreign-before.txt
nix-dabei plan --preset ext4 --boot both --alongside "$d" --flake path:/etc/nixos#vm -o /host/plan.toml \
    > /host/out/plan.txt 2> /host/out/plan-notes.txt
install_planned
