//! The plan model of nix-dabei: disk layouts as data, checked and compiled into ordered steps.
//!
//! This crate does no I/O and runs no programs. Other crates probe disks and perform the steps; other
//! installers can use it to describe and review layouts.
//!
//! ```
//! use layouts::presets::{build, DiskFacts, Encryption, PresetKind, PresetOptions};
//! use layouts::CompileOptions;
//!
//! let disks = vec![DiskFacts::offline("/dev/vda", 20 << 30), DiskFacts::offline("/dev/vdb", 20 << 30)];
//! let mut options = PresetOptions::new(PresetKind::Mirror, disks);
//! options.encryption = Encryption::ZfsNative;
//! let plan = build(&options).unwrap();
//! let steps = plan.compile(&CompileOptions::default()).unwrap();
//! assert_eq!(steps.steps[0].id, "wipe:disk0");
//! assert!(steps.steps.iter().any(|s| s.id == "zpool-create:rpool"));
//! ```
//!
//! The flow is: a [`Plan`] (from a file via [`Plan::from_toml`] / [`Plan::from_json`], or from a preset
//! via [`presets::build`]) is validated ([`Plan::validate`]) and compiled ([`Plan::compile`]) into
//! [`Steps`], each with an id, a description, the devices it touches, whether it destroys data and the
//! exact [`Operation`].
//!
//! Every kind of storage is one module under [`nodes`] with the same interface; see that module for
//! what a new node type provides.

#![deny(missing_docs)]

pub mod alongside;
pub mod boot;
pub mod compile;
pub mod disko;
pub mod error;
pub mod flake_check;
pub mod graph;
pub mod model;
pub mod nixos;
pub mod nodes;
pub mod parse;
pub mod presets;
pub mod programs;
pub mod size;
pub mod steps;
pub mod validate;

/// GPT geometry and the disk node type (kept at this path for other installers).
pub use nodes::gpt;

pub use compile::CompileOptions;
pub use error::{FieldPath, Location, PlanError, Problem};
pub use model::*;
pub use parse::PlanFormat;
pub use size::Size;
pub use steps::{CommandLine, Operation, OperationKind, Step, Steps};
