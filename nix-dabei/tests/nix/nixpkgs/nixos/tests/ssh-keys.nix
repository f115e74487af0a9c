# Stand-in for nixpkgs' nixos/tests/ssh-keys.nix: the test key pair's public half as nixpkgs has it (a
# plan of nix/tests/plans names it), the private half a placeholder path.
pkgs: {
  snakeOilPrivateKey = "/nix/store/00000000000000000000000000000000-privkey.snakeoil";
  snakeOilPublicKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBChdA2BmwcG49OrQN33f/sj+OHL5sJhwVl2Qim0vkUJQCry1zFpKTa9ZcDMiWaEhoAR6FGoaGI04ff7CS+1yybQ= snakeoil";
}
