# shellcheck shell=sh
# The second boot of every layout scenario (/host/lib/verify.sh): open, import and mount from scratch
# with nix-dabei, report what the system sees for the host to check, and unmount again. A scenario adds
# its own checks between verify_mounted and unmount_after_verify.

verify_mounted() {
    if [ -f /host/secret.key ]; then cp /host/secret.key /tmp/secret.key; fi
    nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount.jsonl
    cat /mnt/home/hello.txt > /host/out/hello.txt
    cat /proc/mounts > /host/out/mounts.txt
    ls /dev/disk/by-partuuid > /host/out/partuuids.txt
    /usr/sbin/blkid -o export > /host/out/blkid.txt
    # A root in memory comes back empty: then only the store keeps what the install left.
    if [ -f /mnt/etc/nixos/nix-dabei.nix ]; then cp /mnt/etc/nixos/nix-dabei.nix /host/out/nix-dabei.nix; fi
    if [ -f /mnt/nix/var/nix/profiles/nix-dabei-install-standin ]; then
        cp /mnt/nix/var/nix/profiles/nix-dabei-install-standin /host/out/standin-in-store.txt
        cp /mnt/nix/var/nix/profiles/nix-dabei-install-standin.nix /host/out/module-in-store.nix
    fi
    if [ -f /mnt/var/log/nix-dabei-install-standin ]; then
        cp /mnt/var/log/nix-dabei-install-standin /host/out/standin.txt
    fi
    if zpool list -H -o name | grep -q .; then
        zpool status -j --json-int > /host/out/zpool-status.json
        zfs get -j -p -o name,property,value mountpoint,encryption,keystatus,compression > /host/out/zfs-get.json
        # What the executor's ZFS adapter reads, as it asks it: kept as its fixtures (installer/tests/fixtures).
        for pool in $(zpool list -H -o name); do
            zfs get -j -r -p -t filesystem,volume -o name,property,value,source all "$pool" \
                > "/host/out/zfs-get-all-$pool.json"
            zpool get -j -p all "$pool" > "/host/out/zpool-get-all-$pool.json"
        done
    fi
    cp /run/nix-dabei/journal.json /host/out/journal-boot2.json
}

unmount_after_verify() {
    nix-dabei unmount /host/plan.toml --json > /host/out/unmount2.jsonl
}
