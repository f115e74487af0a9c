# disko's own scripts (`_create`, `_mount`, `_unmount`) for a configuration `nix-dabei export-disko` wrote,
# evaluated offline from disko's lib and nixpkgs' lib. With `weak`, LUKS and ZFS derive keys as cheaply as
# nix-dabei's test builds do (argon2id at 4 iterations of 8 MiB on 1 thread; pbkdf2iters=100000), so that
# both sides of the benchmark do the same work; without it both keep their production settings.
{ nixpkgsLib, disko, config, attr, weak }:
let
  lib = import nixpkgsLib;
  diskoLib = import (disko + "/lib") { inherit lib; makeTest = null; eval-config = null; qemu-common = null; };
  weakLuksArgs = [ "--pbkdf" "argon2id" "--pbkdf-force-iterations" "4" "--pbkdf-memory" "8192" "--pbkdf-parallel" "1" ];
  weaken = node:
    if builtins.isList node then map weaken node
    else if !builtins.isAttrs node then node
    else
      let walked = builtins.mapAttrs (_: weaken) node; in
      if (node.type or null) == "luks" then
        walked // { extraFormatArgs = (node.extraFormatArgs or [ ]) ++ weakLuksArgs; }
      else if (node.type or null) == "zpool" && (node.rootFsOptions.encryption or "off") != "off" then
        walked // { rootFsOptions = walked.rootFsOptions // { pbkdf2iters = "100000"; }; }
      else walked;
  devices = (import config).disko.devices;
  eval = lib.evalModules {
    modules = [ {
      options.disko.devices = lib.mkOption { type = diskoLib.toplevel; };
      config.disko.devices = if weak then weaken devices else devices;
    } ];
  };
in
eval.config.disko.devices.${attr}
