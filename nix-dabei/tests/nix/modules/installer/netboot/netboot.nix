# Stands in for nixpkgs' module of the same path (not available offline): the RAM OS's own settings are
# what the test evaluates. It records that it was imported; a module the RAM OS must not import
# (netboot-minimal.nix, installation-device.nix) has no stand-in here, so importing it fails the test.
{ ... }: { stub.imported."installer/netboot/netboot.nix" = true; }
