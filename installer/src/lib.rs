//! nix-dabei's executor: turns a plan's steps into an installed system, safely and resumably.
//!
//! [`execute::preview`] checks the plan's disks (present, the planned identity, free when they will be
//! wiped) and probes every step; [`execute::execute`] runs what is not done yet, in dependency order,
//! reporting [`Event`]s and keeping a journal under /run/nix-dabei. Each operation type is probed and
//! performed by its own module (beside its node type in `layouts::nodes`), and everything that reads or
//! writes the machine goes through the [`System`] seam: [`RealSystem`] here, [`SimSystem`] in memory for
//! tests and dry runs. LUKS goes through libcryptsetup, ZFS through a typed wrapper over `zpool`/`zfs`;
//! [`command`] is the only module that runs programs.

#![deny(missing_docs)]

pub mod adopt;
pub mod command;
pub mod events;
pub mod execute;
pub mod flake;
pub mod journal;
pub mod lock;
pub mod luks;
mod ops;
pub mod reports;
pub mod secret;
pub mod system;
pub mod tools;

pub use events::Event;
pub use execute::{
    execute, preview, teardown, InstallError, Mode, Options, Outlook, Preview, Report, Secrets, StepError, WipeTarget,
};
pub use secret::Secret;
pub use system::{RealSystem, SimSystem, System};
