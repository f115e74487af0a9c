//! Mounting what the other node types make, under the target root, parents first.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::{Builder, MountSpec};
use crate::steps::{Operation, OperationKind};

/// Mount a filesystem under the target root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Device or dataset.
    pub source: String,
    /// Where, including the target root.
    pub target: String,
    /// `mount -t`.
    pub fs_type: String,
    /// `mount -o`.
    pub options: Vec<String>,
}

impl OperationKind for Mount {
    fn destroys_data(&self) -> bool {
        false
    }

    /// What mount(8) would be asked; the executor calls mount(2) with the same source, type and options.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mount -t {}", self.fs_type)?;
        if !self.options.is_empty() {
            write!(f, " -o {}", self.options.join(","))?;
        }
        write!(f, " {} {}", self.source, self.target)
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let target = &self.target;
        Some((
            format!("unmount:{target}"),
            format!("Unmount {target}"),
            Operation::Unmount(Unmount { target: target.clone(), sources: self.sources() }),
        ))
    }
}

impl Mount {
    /// What the kernel may name as mounted: the source, and for a btrfs of several devices each other
    /// device its `device=` options name.
    pub fn sources(&self) -> Vec<String> {
        let others = self.options.iter().filter_map(|o| o.strip_prefix("device=")).map(str::to_string);
        std::iter::once(self.source.clone()).chain(others).collect()
    }
}

/// Unmount what the plan mounted, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmount {
    /// The mount point.
    pub target: String,
    /// What the plan mounted there ([`Mount::sources`]): something else mounted at the target is not
    /// unmounted.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl OperationKind for Unmount {
    fn destroys_data(&self) -> bool {
        false
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "umount {}", self.target)
    }
}

/// `/boot/` -> `/boot`; refuses relative paths, `.` and `..`.
pub fn normalize_mountpoint(mountpoint: &str) -> Result<String, &'static str> {
    if !mountpoint.starts_with('/') {
        return Err("is not an absolute path");
    }
    if mountpoint.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    // PATH_MAX and NAME_MAX: the kernel refuses longer paths and names when mounting.
    if mountpoint.len() > 4095 {
        return Err("is longer than the 4095 bytes a path may have");
    }
    let mut parts = Vec::new();
    for part in mountpoint.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err("must not contain \".\" or \"..\"");
        }
        if part.len() > 255 {
            return Err("has a name longer than the 255 bytes a file name may have");
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The mountpoint in its normal form; validation has refused those that have none.
pub(crate) fn normal(mountpoint: &str) -> String {
    normalize_mountpoint(mountpoint).unwrap_or_else(|_| mountpoint.to_string())
}

/// The mount steps: parents first; each waits for its filesystem and for the mount it lies under.
pub(crate) fn compile(build: &mut Builder<'_>, mounts: &[MountSpec]) {
    let mut mounts = mounts.to_vec();
    mounts.sort_by_key(|m| if m.mountpoint == "/" { 0 } else { m.mountpoint.matches('/').count() });
    for (index, mount) in mounts.iter().enumerate() {
        let parent = mounts[..index]
            .iter()
            .filter(|p| is_under(&mount.mountpoint, &p.mountpoint))
            .max_by_key(|p| p.mountpoint.len())
            .map(|p| format!("mount:{}", p.mountpoint));
        let mut after: Vec<String> = mount.created_by.iter().cloned().collect();
        after.extend(parent);
        let target = join_target(&build.options.target, &mount.mountpoint);
        build.push(
            format!("mount:{}", mount.mountpoint),
            match mount.created_by {
                Some(_) => format!("Mount {} at {target}", mount.source),
                None => format!("Mount a {} at {target}", mount.fs_type),
            },
            vec![mount.source.clone()],
            None,
            after,
            Operation::Mount(Mount {
                source: mount.source.clone(),
                target,
                fs_type: mount.fs_type.clone(),
                options: mount.options.clone(),
            }),
        );
    }
}

fn is_under(path: &str, parent: &str) -> bool {
    parent == "/" && path != "/" || path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/'))
}

/// A mountpoint of the installed system as a path under the target root.
pub(crate) fn join_target(target: &str, mountpoint: &str) -> String {
    let target = target.trim_end_matches('/');
    if mountpoint == "/" {
        if target.is_empty() {
            "/".to_string()
        } else {
            target.to_string()
        }
    } else {
        format!("{target}{mountpoint}")
    }
}
