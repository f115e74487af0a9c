# The flake of the remote and hetzner scenarios built on the workstation (--build-on local), as its
# override.nix: the stand-in flake's system made a store path whose closure the install copies to the target.
{
  host = { };
  change = config: config // {
    system = (config.system or { }) // { build.toplevel = let
      module = derivation {
        name = "nix-dabei-module"; system = "x86_64-linux"; builder = "/bin/sh";
        text = builtins.readFile ./nix-dabei.nix;
        args = [ "-c" "echo \"$text\" > $out" ];
      };
    in derivation {
      name = "nixos-system-vm"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "echo ${module} > $out" ];
    }; };
  };
}
