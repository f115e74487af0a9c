# The kexec tarball: kexec/bzImage, kexec/initrd, static builds of nix-dabei, ip and kexec (a rescue
# system may lack them or have old ones), and kexec/run, which boots the RAM OS from there, carrying
# over SSH keys and network settings. Unpack it anywhere and run `./kexec/run`.
{ lib
, runCommand
, binutils-unwrapped
, kernelImage
, initrd
, commandLine
, nix-dabei-static
, iproute2-static
, kexec-tools-static
}:

runCommand "nix-dabei-kexec-tarball" { nativeBuildInputs = [ binutils-unwrapped ]; } ''
  mkdir -p kexec $out
  cp ${kernelImage} kexec/bzImage
  cp ${initrd}/initrd kexec/initrd
  cp ${nix-dabei-static}/bin/nix-dabei kexec/nix-dabei
  cp ${iproute2-static}/bin/ip kexec/ip
  cp ${kexec-tools-static}/bin/kexec kexec/kexec
  # They must run on whatever the rescue system is: no dynamic loader, no shared libraries.
  for program in kexec/nix-dabei kexec/ip kexec/kexec; do
    if readelf --program-headers "$program" | grep -q INTERP; then
      echo "$program is not linked statically" >&2
      exit 1
    fi
  done
  cat > kexec/run <<'RUN'
  #!/bin/sh
  # Boots the nix-dabei RAM OS from a rescue system; the SSH session that runs this ends cleanly.
  set -eu
  here=$(cd "$(dirname "$0")" && pwd)
  # nix-dabei calls `ip` and `kexec`: the ones shipped here come first.
  PATH="$here:$PATH"
  export PATH
  exec "$here/nix-dabei" kexec --kernel "$here/bzImage" --initrd "$here/initrd" \
    --append "${commandLine}" "$@"
  RUN
  chmod +x kexec/run kexec/nix-dabei kexec/ip kexec/kexec
  tar -czf $out/nix-dabei-kexec.tar.gz kexec
''
