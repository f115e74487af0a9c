# Stands in for nixpkgs' module of the same path (not available offline): the RAM OS's own settings are
# what the test evaluates.
{ ... }: { }
