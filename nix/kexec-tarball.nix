# The kexec tarball: kexec/bzImage, kexec/initrd, a static nix-dabei, and kexec/run, which a rescue
# system runs to boot into the RAM OS (carrying over SSH keys and network settings).
{ lib
, runCommand
, kernel
, initrd
, kernelParams
, nix-dabei-static
}:

runCommand "nix-dabei-kexec-tarball" { } ''
  mkdir -p kexec $out
  cp ${kernel}/bzImage kexec/bzImage
  cp ${initrd}/initrd kexec/initrd
  cp ${nix-dabei-static}/bin/nix-dabei kexec/nix-dabei
  cat > kexec/run <<'RUN'
  #!/bin/sh
  # Boots the nix-dabei RAM OS from a rescue system; the SSH session that runs this ends cleanly.
  set -eu
  here=$(cd "$(dirname "$0")" && pwd)
  exec "$here/nix-dabei" kexec --kernel "$here/bzImage" --initrd "$here/initrd" \
    --append "${lib.concatStringsSep " " kernelParams}" "$@"
  RUN
  chmod +x kexec/run kexec/nix-dabei
  tar -czf $out/nix-dabei-kexec.tar.gz kexec
''
