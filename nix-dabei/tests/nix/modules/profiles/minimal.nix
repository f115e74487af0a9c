# Stands in for nixpkgs' profiles/minimal.nix (see ../installer/netboot/netboot.nix).
{ ... }: { stub.imported."profiles/minimal.nix" = true; }
