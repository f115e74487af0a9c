#!/bin/sh
# Boot 1: root's key on the "rescue system", as a cloud image writes it (with a `command=` that would
# lock root out if it were copied with its options); the preset planned with remote unlock, installed.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
begin_install
mkdir -p /root/.ssh
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl unlock@test'
printf '%s\n' "no-port-forwarding,command=\"echo 'Please login as debian';sleep 10\" $key" \
    > /root/.ssh/authorized_keys
plan_preset --preset mirror --encrypt luks --swap 256M --remote-unlock \
    --disk /dev/disk/by-id/virtio-l0 --disk /dev/disk/by-id/virtio-l1
install_planned
