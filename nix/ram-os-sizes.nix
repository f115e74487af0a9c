# `nix run .#ram-os-sizes`: builds the kexec tarball and the RAM OS, and prints their sizes beside the
# budgets (ARCHITECTURE.md, "The RAM OS's store"); exits 1 when one is over.
{ writeShellApplication
, coreutils
, findutils
, closureInfo
, kexecTarball
, initrd
, squashfs
, toplevel
}:

let
  # Every store path of the RAM OS (nixpkgs' build-support/closure-info.nix writes them one per line).
  closure = closureInfo { rootPaths = [ toplevel ]; };
in
writeShellApplication {
  name = "nix-dabei-ram-os-sizes";
  runtimeInputs = [ coreutils findutils ];
  text = ''
    over=0
    # report WHAT BYTES BUDGET_MB (0: no budget)
    report() {
      mb=$(( ($2 + 999999) / 1000000 ))
      if [ "$3" -eq 0 ]; then
        echo "$1: $mb MB"
      elif [ "$mb" -le "$3" ]; then
        echo "$1: $mb MB (budget $3 MB)"
      else
        echo "$1: $mb MB, OVER the budget of $3 MB"
        over=1
      fi
    }
    report "kexec tarball" "$(stat -c %s ${kexecTarball}/nix-dabei-kexec.tar.gz)" 150
    report "initrd with the store" "$(stat -c %s ${initrd}/initrd)" 0
    report "store squashfs" "$(stat -c %s ${squashfs})" 0
    report "store unpacked" "$(xargs du -scb < ${closure}/store-paths | tail -n1 | cut -f1)" 0
    exit "$over"
  '';
}
