# shellcheck shell=sh
# Sourced first by every boot script of every scenario, as /host/lib/common.sh in the guest.
#
# The guest's shell is busybox, which runs its own applets (mount, mkfs.vfat, ...) before anything on
# PATH: scripts name util-linux tools by full path.
set -eu
export PATH="/host/bin:$PATH"
# Test-only: weak key derivation so that LUKS and ZFS keys are quick to derive under emulation.
export NIX_DABEI_WEAK_KDF=1
mkdir -p /host/out

# A line on the console, found by the harness's log reader.
say() { echo "nix-dabei-vm: $*"; }

# The name of the first network interface besides lo.
network_interface() {
    for dev in /sys/class/net/*; do
        if [ "${dev##*/}" != lo ]; then echo "${dev##*/}"; return; fi
    done
}
