//! Test harnesses for nix-dabei.
//!
//! - [`vm`]: the test image and the qemu runner.
//! - the `vm-tests` binary: a qemu VM with a real kernel, ZFS, LUKS, udev and kexec, for the rest.

pub mod vm;
