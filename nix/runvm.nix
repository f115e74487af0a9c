# `nix run .#runvm`: boots the RAM OS in qemu with blank disks.
#   nix-dabei-runvm [--memory MIB] [--disks N] [--disk-size SIZE] [--ssh-port PORT] [--no-net]
{ lib
, stdenv
, writeShellApplication
, qemu
, kernelImage
, initrd
, commandLine
}:

let
  arch = stdenv.hostPlatform.qemuArch;
  # aarch64 has no default machine; x86_64's is fine.
  machine = lib.optionalString stdenv.hostPlatform.isAarch64 "-machine virt -cpu max";
in
writeShellApplication {
  name = "nix-dabei-runvm";
  runtimeInputs = [ qemu ];
  text = ''
    memory=1536 disks=2 size=20G port=2222 net=1
    while [ $# -gt 0 ]; do
      case "$1" in
        --memory) memory=$2; shift 2 ;;
        --disks) disks=$2; shift 2 ;;
        --disk-size) size=$2; shift 2 ;;
        --ssh-port) port=$2; shift 2 ;;
        --no-net) net=0; shift ;;
        *) echo "nix-dabei-runvm: unknown option $1" >&2; exit 2 ;;
      esac
    done
    dir=$(mktemp -d -t nix-dabei-vm.XXXXXX)
    args=()
    for i in $(seq 1 "$disks"); do
      qemu-img create -q -f qcow2 "$dir/disk$i.qcow2" "$size"
      args+=(-drive "file=$dir/disk$i.qcow2,if=none,id=d$i" -device "virtio-blk-pci,drive=d$i,serial=disk$i")
    done
    if [ "$net" = 1 ]; then
      args+=(-nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:22")
    else
      args+=(-nic none)
    fi
    accel=tcg
    [ -w /dev/kvm ] && accel=kvm
    echo "disks in $dir; ssh -p $port root@127.0.0.1" >&2
    exec qemu-system-${arch} ${machine} -accel "$accel" -m "$memory" -smp 2 -nographic \
      -kernel ${kernelImage} -initrd ${initrd}/initrd \
      -append "${commandLine}" "''${args[@]}"
  '';
}
