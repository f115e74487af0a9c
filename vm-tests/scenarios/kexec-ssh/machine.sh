#!/bin/sh
# The one machine of the scenario, in two systems: boot 1 is the rescue system (network and SSH as a
# hoster sets them up), which the host kexecs into the RAM OS (boot 2, NIX_DABEI_BOOT from the kernel
# command line the host passes); the RAM OS restores the network and waits for the host's install.
# shellcheck source=SCRIPTDIR/../lib/common.sh
. /host/lib/common.sh
iface=$(network_interface)
start_ssh() {
    mkdir -p /etc/dropbear
    dropbearconvert openssh dropbear /etc/ssh/ssh_host_ed25519_key /etc/dropbear/host_key 2>/dev/null
    dropbear -r /etc/dropbear/host_key -p 22
}
if [ "$NIX_DABEI_BOOT" = 1 ]; then
    say "rescue system on $iface"
    ip link set dev "$iface" up
    ip address add 10.0.2.15/24 dev "$iface"
    ip route add default via 10.0.2.2 dev "$iface"
    # An IPv6 address and a route through a gateway outside every prefix (onlink), as some hosters set up.
    /usr/sbin/ip address add 2001:db8:5::15/64 dev "$iface" nodad
    /usr/sbin/ip route add 192.0.2.0/24 via 10.0.3.1 dev "$iface" onlink
    /usr/sbin/ip route add 198.18.0.0/15 dev "$iface"
    printf '0123456789abcdef0123456789abcdef\n' > /etc/machine-id
    printf 'nameserver 10.0.2.3\n' > /etc/resolv.conf
    mkdir -p /root/.ssh /etc/ssh
    cp /host/test_key.pub /root/.ssh/authorized_keys
    # A second key as cloud images give root one: behind a command that refuses the login. sshd reads
    # authorized_keys2 too; the handover must carry the key without the command.
    printf 'no-port-forwarding,command="echo Please login as debian;sleep 1;exit 142" %s\n' \
        "$(cat /host/cloud_key.pub)" > /root/.ssh/authorized_keys2
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    start_ssh
    touch /host/out/rescue-ready
    # The host runs nix-dabei kexec over SSH; this boot ends with the switch.
    sleep 600
    exit 1
fi
say "RAM OS after kexec"
test -d /etc/nix-dabei/kexec
nix-dabei restore-network /etc/nix-dabei/kexec > /host/out/restore.txt 2>&1
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo > /host/out/meminfo-ramos.txt
# The least memory available while the RAM OS installs, sampled each second.
(while :; do sed -n 's/^MemAvailable: *//p' /proc/meminfo >> /host/out/memavailable-ramos.txt; sleep 1; done) &
start_ssh
touch /host/out/ramos-ready
i=0
until [ -f /host/out/installed ]; do
    i=$((i + 1)); [ $i -lt 900 ] || exit 1
    sleep 1
done
