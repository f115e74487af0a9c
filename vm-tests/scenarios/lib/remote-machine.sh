#!/bin/sh
# The machine of the remote and hetzner scenarios, sourced by their machine.sh after common.sh: the
# rescue system (boot 1), kexec'd from the host into the RAM OS (boot 2), which installs and reboots
# into the installed system (boot 3, the machine started again). The scenario sets:
#   root_key         the file root's authorized key is read from in boot 1 (waited for: it may appear late)
#   wrong_key_first  1: the RAM OS first shows another host key than the one carried over, until the host
#                    writes out/right-key
#   reset_to_rescue  1: once the host writes out/reset (the API's reset), the first system "reboots"
#                    into a rescue system with a new host key, and says so with out/rescue-reset-ready
: "${root_key:?}" "${wrong_key_first:?}" "${reset_to_rescue:=0}"
iface=$(network_interface)
network() {
    ip link set dev "$iface" up
    ip address add 10.0.2.15/24 dev "$iface" 2>/dev/null || true
    ip route add default via 10.0.2.2 dev "$iface" 2>/dev/null || true
}
ssh_with() { # host key file (OpenSSH format)
    mkdir -p /etc/dropbear
    dropbearconvert openssh dropbear "$1" /etc/dropbear/host_key 2>/dev/null
    dropbear -r /etc/dropbear/host_key -p 22
}
wait_for() { # file, seconds
    i=0
    until [ -f "$1" ]; do i=$((i + 1)); [ $i -lt "$2" ] || exit 1; sleep 1; done
}
# The user's flake holds the layout's module, as committed before installing (where the host made the
# plan; a plan made here by rules has its module written into the host's flake instead).
if [ -f /host/nix-dabei.nix ]; then cp /host/nix-dabei.nix /etc/nixos/nix-dabei.nix; fi
case "$NIX_DABEI_BOOT" in
1)
    say "rescue system on $iface"
    network
    mkdir -p /root/.ssh /etc/ssh
    wait_for "$root_key" 300
    cp "$root_key" /root/.ssh/authorized_keys
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    # nix-dabei is not on the rescue system's PATH: remote brings its own.
    export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    ssh_with /etc/ssh/ssh_host_ed25519_key
    touch /host/out/rescue-ready
    if [ "$reset_to_rescue" = 1 ]; then
        wait_for /host/out/reset 300
        kill "$(pidof dropbear)"; sleep 1
        rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub
        ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
        ssh_with /etc/ssh/ssh_host_ed25519_key
        say "rescue system after the reset, with a new host key"
        touch /host/out/rescue-reset-ready
    fi
    # nix-dabei remote kexecs from here; this boot ends with the switch.
    sleep 900
    exit 1
    ;;
2)
    say "RAM OS after kexec"
    mkdir -p /etc/nix-dabei
    echo "nix-dabei RAM OS (test image)" > /etc/nix-dabei/ram-os
    nix-dabei restore-network /etc/nix-dabei/kexec > /host/out/restore.txt 2>&1
    grep -E '^MemAvailable:' /proc/meminfo > /host/out/meminfo-ramos.txt
    # The RAM OS's own nix-dabei, on the PATH SSH sessions get (with the test's weak key derivation).
    printf '#!/bin/sh\nexport NIX_DABEI_WEAK_KDF=1\nexec /host/bin/nix-dabei "$@"\n' > /usr/local/bin/nix-dabei
    # Rebooting (systemd's way, as in the RAM OS) ends this machine; the harness starts boot 3 as the
    # installed system.
    # shellcheck disable=SC2016 # "$1" is the shim's own argument.
    printf '#!/bin/sh\n[ "$1" = reboot ] || exit 1\ntouch /host/out/rebooted\n%s\n' \
        'echo 0 > /host/exit-code; sync; poweroff -f' > /usr/local/bin/systemctl
    chmod +x /usr/local/bin/nix-dabei /usr/local/bin/systemctl
    network
    if [ "$wrong_key_first" = 1 ]; then
        # First another host key than the one carried over: remote must refuse it.
        ssh-keygen -q -t ed25519 -N '' -f /tmp/other_host_key
        ssh_with /tmp/other_host_key
        touch /host/out/ramos-wrong-key
        wait_for /host/out/right-key 600
        kill "$(pidof dropbear)"; sleep 1
    fi
    ssh_with /etc/ssh/ssh_host_ed25519_key
    touch /host/out/ramos-ready
    sleep 1500
    exit 1
    ;;
*)
    say "the installed system"
    nix-dabei mount /host/plan.toml --passphrase-file /host/passphrase --json > /host/out/mount.jsonl
    cp /mnt/var/log/nix-dabei-install-standin /host/out/standin.txt
    # A system built on the host and installed with --system has a profile; a flake built there need not.
    if generation=$(readlink /mnt/nix/var/nix/profiles/system); then
        system=$(readlink "/mnt/nix/var/nix/profiles/$generation")
        [ -e "/mnt$system" ] && echo "$system" > /host/out/system-profile.txt
    fi
    zpool status -j --json-int > /host/out/zpool-status.json
    network
    ssh-keygen -q -t ed25519 -N '' -f /tmp/installed_host_key
    mkdir -p /root/.ssh && cp /host/test_key.pub /root/.ssh/authorized_keys
    ssh_with /tmp/installed_host_key
    wait_for /host/out/done 600
    nix-dabei unmount /host/plan.toml --json > /host/out/unmount.jsonl
    ;;
esac
