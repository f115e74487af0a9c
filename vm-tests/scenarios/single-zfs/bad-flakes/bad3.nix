# systemd-boot on this BIOS-booted VM.
{ host = { boot.loader.systemd-boot.enable = true; };
  change = c: c // { boot = c.boot // { loader = c.boot.loader // { systemd-boot.enable = true; }; }; }; }
