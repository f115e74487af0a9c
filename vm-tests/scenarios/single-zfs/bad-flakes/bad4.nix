# A configuration NixOS itself refuses: its system derivation fails an assertion, as NixOS reports one.
{ host = { }; change = c: c // { system.build.toplevel = throw ''

  Failed assertions:
  - You cannot have duplicated devices in mirroredBoots''; }; }
