# Nothing mounted at /.
{ host = { }; change = c: c // { fileSystems = builtins.removeAttrs c.fileSystems [ "/" ]; }; }
