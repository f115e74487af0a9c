#!/bin/sh
# Boot 1: the user made the same plan with the CLI before and committed its module into the flake, which
# the TUI checks before installing; then the keystrokes, and the install checked as every install.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
argv_shims
nix-dabei plan --preset mirror --encrypt --disk /dev/disk/by-id/virtio-t0 --disk /dev/disk/by-id/virtio-t1 \
    --hostname tuihost -o /tmp/same-plan.toml > /dev/null
nix-dabei nixos-module /tmp/same-plan.toml > /etc/nixos/nix-dabei.nix

export TERM=screen
# Waits until the screen shows $1 (the last screen is left in out/tui.txt).
wait_for() {
    i=0
    until tmux capture-pane -p -t tui > /host/out/tui.txt 2>/dev/null && grep -q "$1" /host/out/tui.txt; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then say "waited for: $1"; cat /host/out/tui.txt; exit 1; fi
        sleep 0.2
    done
}
press() { for key in "$@"; do tmux send-keys -t tui "$key"; sleep 0.2; done; }
type_text() { tmux send-keys -t tui -l "$1"; sleep 0.2; }
export LC_ALL=C.UTF-8
tmux -u new-session -d -s tui -x 120 -y 40 "env PATH=$PATH NIX_DABEI_WEAK_KDF=1 nix-dabei tui --save \
    /host/plan.toml; echo exited-\$? > /host/out/tui-exit; sleep 60"
wait_for "Install NixOS onto this machine"
press Enter
wait_for "Choose the disks"
press Space Down Space Enter
wait_for "ZFS mirror"
press Down Right
wait_for "ZFS native"
press Enter
wait_for "Host name"
press BSpace BSpace BSpace BSpace BSpace
type_text tuihost
press Tab
type_text "path:/etc/nixos#vm"
press Enter
wait_for "Repeat it"
type_text "$(cat /host/passphrase)"
press Tab
type_text "$(cat /host/passphrase)"
press Enter
wait_for "These disks will be WIPED"
type_text wipe
press Enter
wait_for "Installed."
press Enter
until [ -f /host/out/tui-exit ]; do sleep 0.2; done
test "$(cat /host/out/tui-exit)" = exited-0

report_released
nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount-after-install.jsonl
after_install
