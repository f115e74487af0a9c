//! nix-dabei's console installer, on the same engine as the CLI: disks from `partitioner`, the plan from
//! `layouts`, the run from `installer` on a worker thread.
//!
//! Built in the Elm style: [`app::Model`] holds everything shown, [`app::update`] changes it for a
//! message and returns commands, [`view::view`] draws it. Only [`runtime`] touches the terminal or the
//! machine.

#![deny(missing_docs)]

pub mod app;
pub mod runtime;
pub mod view;

pub use runtime::{run, TuiOptions};
