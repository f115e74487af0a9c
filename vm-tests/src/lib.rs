//! Test harnesses for nix-dabei.
//!
//! - [`loopdev`]: sparse files attached as loop devices on the host, detached again even when a test
//!   fails; for what the host kernel can do (partition tables, wiping, mkfs, mounts).
//! - the `vm-tests` binary: a qemu VM with a real kernel, ZFS, LUKS, udev and kexec, for the rest.

pub mod loopdev;
pub mod tmux;
pub mod vm;
