#!/usr/bin/env bash
# Builds the VM test image: Debian's kernel (uncompressed, for a fast PVH boot) and an initrd with the ZFS
# modules, the programs nix-dabei calls, busybox, systemd-udevd and the init in this folder. Cached, keyed
# by everything it is built from; prints the folder holding vmlinux and initrd.img.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

kver=$(kernel_abi)
zfs_dir=$("$here/build-zfs.sh")
programs=(
    /usr/sbin/zpool /usr/sbin/zfs /usr/sbin/zgenhostid /sbin/mount.zfs /usr/sbin/zdb
    /usr/sbin/cryptsetup /usr/sbin/sgdisk /usr/sbin/sfdisk
    /usr/sbin/mkfs.vfat /usr/sbin/mkfs.fat /usr/sbin/mkfs.ext4 /usr/sbin/mke2fs /usr/sbin/mkfs.xfs /usr/sbin/mkfs.btrfs
    /usr/sbin/fsck.vfat /usr/sbin/fsck.fat /usr/sbin/e2fsck /usr/sbin/xfs_db /usr/bin/btrfs
    /usr/sbin/mkfs.f2fs /usr/sbin/fsck.f2fs
    /usr/sbin/lvm /usr/sbin/pdata_tools /usr/sbin/dmsetup /usr/sbin/mdadm
    /usr/sbin/mkswap /usr/sbin/swapon /usr/sbin/swapoff /usr/sbin/blkid /usr/sbin/wipefs /usr/sbin/blkdiscard
    /usr/sbin/losetup /usr/bin/mount /usr/bin/umount /usr/bin/findmnt /usr/bin/lsblk
    /usr/sbin/kexec /usr/bin/udevadm /lib/systemd/systemd-udevd /usr/sbin/modprobe
    /usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/dropbear /usr/bin/dropbearkey /usr/bin/dropbearconvert /usr/bin/tmux /usr/sbin/ip
    /usr/bin/nix
    # disko's scripts, for the benchmark: bash, and partprobe after each partition.
    /usr/bin/bash /usr/sbin/partprobe
    # Where the benchmark's mount spends its time: strace of one untimed run.
    /usr/bin/strace
)
# Every program of the machine being installed that the one program list names (nix/programs.json, as
# `nix-dabei programs --json` prints it), as this machine has it (scripts/setup installs their Debian
# packages): the image misses none that a step may run. A name that is a link to another program
# (pvcreate to lvm, mkfs.vfat to mkfs.fat) is copied once and linked.
repo=$(cd "$here/../.." && pwd)
listed=$(python3 -c 'import json, sys
for p in json.load(open(sys.argv[1])):
    if p["runs_on"] == "target" and p["debian"]:
        print(p["name"])' "$repo/nix/programs.json")
links=()
for name in $listed; do
    path=$(PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$name") ||
        { echo "build-image: $name (nix/programs.json) is not on this machine: run scripts/setup" >&2; exit 1; }
    real=$(readlink -f "$path")
    [ "$(basename "$real")" = "$name" ] || links+=("$(dirname "$path")/$name:$(basename "$real")")
    case " ${programs[*]} " in *" $real "*) ;; *) programs+=("$real") ;; esac
done
modules=(zfs virtio_pci virtio_blk virtio_scsi sd_mod nvme virtio_rng virtio_net 9p 9pnet_virtio
    dm_mod dm_crypt xts aesni_intel af_alg algif_skcipher algif_hash crc32c_generic
    ext4 vfat nls_cp437 nls_iso8859_1 nls_ascii nls_utf8 xfs btrfs f2fs loop
    dummy 8021q bonding
    dm_snapshot dm_thin_pool dm_mirror dm_raid raid0 raid1 raid456 raid10)
inputs_hash=$( {
    cat "$here/build-image.sh" "$here/common.sh" "$here/init" "$here/nixos-install" "$here/flake.nix" \
        "$repo/nix/programs.json"
    echo "$kver $(candidate_version "linux-image-$kver") $zfs_dir"
    for p in "${programs[@]}"; do
        # Merged /usr: dpkg may know the file under /bin or /sbin.
        { dpkg -S "$(readlink -f "$p")" 2>/dev/null || dpkg -S "${p#/usr}" 2>/dev/null || true; } | head -n1
    done | sort -u |
        while IFS=: read -r pkg _; do dpkg-query -W -f='${Package} ${Version}\n' "${pkg%%,*}" 2>/dev/null; done
} | sha256sum | cut -c1-16)
out="$cache_root/image-$kver-$inputs_hash"
if [ -f "$out/vmlinux" ] && [ -f "$out/initrd.img" ] && [ -f "$out/initrd.zst" ] && [ -f "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi
start=$(date +%s)
work=$(mktemp -d "$cache_root/image-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The kernel and its modules, from the Debian package (not installed on the host).
deb=$(fetch_deb "linux-image-$kver")
dpkg-deb -x "$deb" "$work/kernel"
extra="$work/kernel/lib/modules/$kver/extra"
mkdir -p "$extra"
cp "$zfs_dir/zfs.ko" "$zfs_dir/spl.ko" "$extra/"
depmod -b "$work/kernel" "$kver"

# An uncompressed vmlinux: qemu boots it through PVH, skipping the slow decompression under TCG.
extract_vmlinux() { # bzImage out
    local image=$1 target=$2 magic tool offset
    for pair in "fd377a585a00:xz -dc" "28b52ffd:zstd -dc" "1f8b0800:gzip -dc" "425a68:bzip2 -dc"; do
        magic=${pair%%:*}; tool=${pair#*:}
        for offset in $(LC_ALL=C grep -obUaP "$(echo "$magic" | sed 's/../\\x&/g')" "$image" | cut -d: -f1); do
            if tail -c "+$((offset + 1))" "$image" | $tool > "$target" 2>/dev/null || [ -s "$target" ]; then
                if file "$target" | grep -q ELF; then return 0; fi
            fi
        done
    done
    echo "build-image: cannot extract vmlinux from $image" >&2
    return 1
}
mkdir -p "$out.tmp"
extract_vmlinux "$work/kernel/boot/vmlinuz-$kver" "$out.tmp/vmlinux"
# The compressed kernel too, for kexec from inside the VM.
cp "$work/kernel/boot/vmlinuz-$kver" "$out.tmp/bzImage"

root="$work/root"
# Merged /usr, as on the host, so that every path ldd names lands in one place.
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,etc,proc,sys,dev,run,tmp,mnt,host,root,var/lib}
for dir in bin sbin lib lib64; do ln -s "usr/$dir" "$root/$dir"; done

copy_with_libs() { # program
    local program=$1 lib
    [ -e "$program" ] || { echo "build-image: missing $program" >&2; return 1; }
    mkdir -p "$root$(dirname "$program")"
    cp -L "$program" "$root$program"
    for lib in $(ldd "$program" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
for program in "${programs[@]}"; do copy_with_libs "$program"; done
for link in "${links[@]}"; do
    name=${link%%:*}
    [ -e "$root$name" ] || ln -s "${link#*:}" "$root$name"
done
# LVM's and thin-provisioning-tools' commands are names of one program each.
for command in pvcreate vgcreate lvcreate vgchange pvs vgs lvs pvscan vgscan; do ln -sf lvm "$root/usr/sbin/$command"; done
for command in thin_check thin_repair thin_dump thin_restore; do ln -sf pdata_tools "$root/usr/sbin/$command"; done
# Nix's store commands are names of one program: `nix copy` from a workstation runs nix-store on this side;
# import-disko evaluates a .nix file with nix-instantiate.
for command in nix-store nix-daemon nix-env nix-instantiate; do ln -sf nix "$root/usr/bin/$command"; done
# Libraries systemd-udevd and libcryptsetup open at run time rather than link.
for lib in /usr/lib/x86_64-linux-gnu/libkmod.so.2 /usr/lib/x86_64-linux-gnu/libblkid.so.1 \
    /usr/lib/x86_64-linux-gnu/libudev.so.1 /usr/lib/x86_64-linux-gnu/libcryptsetup.so.12 \
    /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
    [ -e "$lib" ] && copy_with_libs "$lib"
done
cp /usr/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] ||
        [ -e "$root/sbin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# udev: rules and helpers, for /dev/disk/by-id links and /dev/zvol.
mkdir -p "$root/usr/lib/udev" "$root/etc/udev"
cp -r /usr/lib/udev/rules.d "$root/usr/lib/udev/"
for helper in ata_id scsi_id zvol_id vdev_id; do
    [ -e "/usr/lib/udev/$helper" ] && copy_with_libs "/usr/lib/udev/$helper"
done
# Terminal descriptions for tmux (the TUI test) and the Linux console.
mkdir -p "$root/usr/share/terminfo"
cp -r /lib/terminfo/. "$root/usr/share/terminfo/"
mkdir -p "$root/usr/lib/locale"
cp -r /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\ndisk:x:6:\ntty:x:5:\nkmem:x:15:\ninput:x:101:\nkvm:x:102:\nvideo:x:44:\naudio:x:29:\nsgx:x:103:\nrender:x:104:\ncdrom:x:24:\ndialout:x:20:\ntape:x:26:\n' > "$root/etc/group"
: > "$root/etc/fstab"
ln -sf /proc/self/mounts "$root/etc/mtab"

# Kernel modules with everything they depend on.
for module in "${modules[@]}"; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$module" 2>/dev/null | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r ko; do
    rel=${ko#"$work/kernel"}
    mkdir -p "$root$(dirname "$rel")"
    cp "$ko" "$root$rel"
done
cp "$work/kernel/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"

install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/nixos-install" "$root/usr/local/bin/nixos-install"
# Debian's nix evaluates flakes without inputs: the check before install runs against this stand-in flake.
mkdir -p "$root/etc/nixos" "$root/nix/store" "$root/etc/nix"
install -m 0644 "$here/flake.nix" "$root/etc/nixos/flake.nix"
# No binary cache is reachable from the test VM: `nix copy --substitute-on-destination` (remote
# --build-on local) must not wait on one.
printf 'build-users-group =\nsubstituters =\nexperimental-features = nix-command flakes\n' > "$root/etc/nix/nix.conf"
echo "$kver" > "$root/etc/nix-dabei-vm-kernel"

(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$out.tmp/initrd.img"
# A second cpio can be appended only after 4-byte alignment; pad to 512 to be safe.
size=$(stat -c %s "$out.tmp/initrd.img")
pad=$(( (512 - size % 512) % 512 ))
[ "$pad" -gt 0 ] && head -c "$pad" /dev/zero >> "$out.tmp/initrd.img"
# Compressed as a RAM OS initrd is, for kexec from a small rescue system.
zstd -q -12 -T0 "$out.tmp/initrd.img" -o "$out.tmp/initrd.zst"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "build-image: $(du -h "$out/initrd.img" | cut -f1) initrd, $(du -h "$out/vmlinux" | cut -f1) vmlinux in $(( $(date +%s) - start )) s" >&2
echo "$out"
