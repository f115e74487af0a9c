# Stands in for nixpkgs' module of the same path (see ../installer/netboot/netboot.nix).
{ ... }: { stub.imported."testing/test-instrumentation.nix" = true; }
