#!/bin/sh
# Boot 2, run again and again: resume the install, interrupted right after the first step this run
# applies that no earlier run finished, and again in the same boot for as long as the executor only
# kills the run (after a step that changed nothing but the kernel's state: opening LUKS, a mount, swap),
# until it cuts the power (after a step that wrote to the disks) or, once during each step named in
# /host/scenario/cut-inside (luksFormat, zpool create and mkfs), while the step runs. A run that finds
# nothing left to do ends the repetitions.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
# shellcheck source=SCRIPTDIR/../lib/install.sh
. /host/lib/install.sh
layout_module
inside=$(cat /host/scenario/cut-inside)
# A line of its own between the boots' events, for the check of what each boot resumed.
printf '{"event":"boot"}\n' >> /host/out/cuts.jsonl
while :; do
    rc=0
    NIX_DABEI_TEST_POWER_OFF_DURING=$inside NIX_DABEI_TEST_ONCE_DIR=/host/out/cut-inside \
        NIX_DABEI_TEST_KILL_AFTER=new:/host/out/cuts.jsonl nix-dabei apply /host/plan.toml --yes-wipe-all \
        --passphrase-file /host/passphrase --json >> /host/out/cuts.jsonl 2>> /host/out/cuts.err || rc=$?
    case $rc in
        0) touch /host/out/cuts-finished; break ;;
        # Killed (SIGKILL) after a step that changed only the kernel's state: resumed in this boot.
        137) ;;
        *) echo "nix-dabei apply failed with $rc" >> /host/out/cuts.err; exit 1 ;;
    esac
done
echo o > /proc/sysrq-trigger
sleep 30
