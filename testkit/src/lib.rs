//! Test support shared by the crates' tests (never part of a release binary):
//!
//! - [`loopdev`]: sparse files attached as loop devices on the host, detached again even when a test
//!   fails; for what the host kernel can do (partition tables, wiping, mkfs, mounts).
//! - [`tmux`]: terminal programs driven through tmux, with keys sent and the screen read back.
//! - [`hetzner`]: a stand-in for Hetzner's Cloud API and Robot on 127.0.0.1, recording every request.

pub mod hetzner;
pub mod loopdev;
pub mod tmux;
