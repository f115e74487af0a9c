# shellcheck shell=sh
# The install boot of the layout scenarios (/host/lib/install.sh): a scenario's boot script calls
# begin_install, writes /host/plan.toml its own way, then calls install_planned.

# Shims that record the arguments of the programs that handle keys, so that the host can check that no
# passphrase ever reached a command line (out/argv.log).
argv_shims() {
    mkdir -p /host/shims
    for program in zpool zfs mkfs.vfat mkfs.ext4 mkswap nixos-install; do
        # By full path: busybox's shell would run its own applet (mkswap, mkfs.vfat) for a bare name.
        real=$(for dir in /host/bin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
            if [ -x "$dir/$program" ] && [ ! -L "$dir/$program" ]; then echo "$dir/$program"; break; fi
        done)
        printf '#!/bin/sh\necho "%s $*" >> /host/out/argv.log\nexec %s "$@"\n' "$program" "$real" \
            > "/host/shims/$program"
        chmod +x "/host/shims/$program"
    done
    export PATH="/host/shims:$PATH"
}

# The layout's module goes into the stand-in flake (vm-tests/image/flake.nix) before the install, as a
# user commits it into theirs: the check before install evaluates that flake.
layout_module() {
    nix-dabei nixos-module /host/plan.toml > /etc/nixos/nix-dabei.nix
}

# What an install leaves: nothing mounted under /mnt, no pool imported, no LUKS mapping open, and each
# pool member's label (readable where it is not inside LUKS) with the pool's state and host id.
report_released() {
    zpool list -H -o name > /host/out/pools-after-install.txt
    awk '$2 ~ "^/mnt"' /proc/mounts > /host/out/mounts-after-install.txt
    for mapper in /dev/mapper/*; do
        [ "$mapper" = /dev/mapper/control ] || basename "$mapper"
    done > /host/out/mappers-after-install.txt
    for d in /dev/disk/by-partuuid/*; do
        echo "== $(basename "$d")"
        zdb -l "$d" 2>/dev/null | grep -E '^ +(state|hostid):' | sort -u
    done > /host/out/labels-after-install.txt
}

# Once the system is installed and mounted again: write a file into the target, look at the disks,
# apply again (a no-op), keep the journal, unmount.
after_install() {
    mkdir -p /mnt/home
    echo "written in boot 1" > /mnt/home/hello.txt
    nix-dabei disks --json > /host/out/disks-in-use.json
    nix-dabei apply /host/plan.toml --json > /host/out/apply2.jsonl
    cp /run/nix-dabei/journal.json /host/out/journal-boot1.json
    nix-dabei unmount /host/plan.toml --json > /host/out/unmount1.jsonl
}

# The disks as nix-dabei lists them before anything is written; the key handlers' arguments recorded.
begin_install() {
    argv_shims
    nix-dabei disks --json > /host/out/disks.json
}

# Mounts the installed plan again, after the install released it.
mount_after_install() {
    say "mounting after the install"
    nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount-after-install.jsonl
    say "mounted after the install"
}

# Applies /host/plan.toml (which installs and releases the disks; APPLY_ARGS adds options), then
# report_released, mount_after_install and after_install.
install_planned() {
    layout_module
    # shellcheck disable=SC2086 # APPLY_ARGS is a list of options.
    nix-dabei apply /host/plan.toml --yes-wipe-all --passphrase-file /host/passphrase --json ${APPLY_ARGS:-} \
        > /host/out/apply1.jsonl
    report_released
    mount_after_install
    after_install
}

# Makes /host/plan.toml from a preset for the stand-in flake: plan_preset ARGS...
plan_preset() {
    nix-dabei plan "$@" --flake path:/etc/nixos#vm -o /host/plan.toml > /host/out/plan.txt
}

# Makes /host/plan.toml from a plan file of the scenario (plan_file /host/scenario/plan.toml), reviewed
# by `nix-dabei plan` as a user would.
plan_file() {
    cp "$1" /host/plan.toml
    nix-dabei plan /host/plan.toml > /host/out/plan.txt
}

# Makes /host/plan.toml from one of disko's examples (the share's disko/NAME.json) and this VM's disks:
# plan_disko NAME --device NAME=PATH... The examples boot with UEFI (an ESP, no BIOS boot partition)
# and the VM with SeaBIOS: the check before install rightly refuses them here, so it is skipped.
plan_disko() {
    example=$1
    shift
    printf '%s' 'disko example key' > /host/secret.key
    cp /host/secret.key /tmp/secret.key
    nix-dabei import-disko "/host/disko/$example.json" "$@" -o /host/plan.toml 2> /host/out/import-warnings.txt
    nix-dabei plan /host/plan.toml --flake path:/etc/nixos#vm > /host/out/plan.txt
    sed -i '1i flake = "path:/etc/nixos#vm"' /host/plan.toml
    APPLY_ARGS=--skip-flake-check
}
