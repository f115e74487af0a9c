# The test VM's stand-in for a host's flake: `nixosConfigurations.vm.config` is a plain attribute set (the
# VM has no nixpkgs), made from the layout's module that the scenario writes beside it
# (`nix-dabei nixos-module PLAN > nix-dabei.nix`, as the README's workflow commits it into a flake), with
# stand-ins for lib.mkDefault and lib.mkIf. An override.nix beside it changes the result, to make flakes
# that do not fit the plan: `{ host = { ... }; change = config: ...; }`.
{
  outputs =
    { self }:
    {
      nixosConfigurations.vm.config =
        let
          lib = {
            mkDefault = value: value;
            mkIf = condition: value: if condition then value else { };
          };
          override =
            if builtins.pathExists ./override.nix then
              import ./override.nix
            else
              {
                host = { };
                change = config: config;
              };
          host = {
            boot.loader.systemd-boot.enable = false;
            boot.loader.efi.canTouchEfiVariables = false;
          } // override.host;
          layout = import ./nix-dabei.nix {
            inherit lib;
            config = host;
            pkgs.rsync = "/nix/store/rsync";
          };
        in
        override.change layout;
    };
}
