{
  description = "nix-dabei: install NixOS onto the disks of a machine reached by SSH or a console";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      installerFor = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.ram-os
          { nixpkgs.overlays = [ self.overlays.default ]; }
        ];
      };
    in
    {
      overlays.default = final: prev: {
        nix-dabei = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (system: pkgs:
        let
          nix-dabei = pkgs.callPackage ./nix/package.nix { };
          installer = (installerFor system).config.system.build;
        in
        {
          inherit nix-dabei;
          default = nix-dabei;
          kernel = installer.kernel;
          initrd = installer.initialRamdisk;
          kexec-tarball = pkgs.callPackage ./nix/kexec-tarball.nix {
            kernel = installer.kernel;
            initrd = installer.initialRamdisk;
            kernelParams = (installerFor system).config.boot.kernelParams;
            nix-dabei-static = pkgs.pkgsStatic.callPackage ./nix/package.nix { };
          };
          runvm = pkgs.callPackage ./nix/runvm.nix {
            kernel = installer.kernel;
            initrd = installer.initialRamdisk;
            kernelParams = (installerFor system).config.boot.kernelParams;
          };
        });

      apps = forAllSystems (system: pkgs: {
        runvm = {
          type = "app";
          program = "${self.packages.${system}.runvm}/bin/nix-dabei-runvm";
        };
      });

      nixosModules = {
        ram-os = import ./nix/ram-os.nix;
        nix-dabei = import ./nix/nix-dabei-module.nix;
      };

      nixosConfigurations.installer = installerFor "x86_64-linux";

      checks = forAllSystems (system: pkgs: {
        inherit (self.packages.${system}) nix-dabei kexec-tarball;
      });
    };
}
