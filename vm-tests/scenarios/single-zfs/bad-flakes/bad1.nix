# A wrong host id, and a mount the disks do not provide.
{ host = { }; change = c: c // { networking = c.networking // { hostId = "00000000"; };
  fileSystems = c.fileSystems // { "/data" = { device = "/dev/disk/by-label/data"; fsType = "xfs"; }; }; }; }
