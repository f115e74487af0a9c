//! The simulated btrfs: subvolumes and swap files inside a mounted btrfs.

use std::collections::{BTreeMap, BTreeSet};

use layouts::steps::CommandLine;

use super::{failed, State};
use crate::command::CommandError;

/// What a btrfs holds: subvolume paths and files (path inside the top level -> contents).
#[derive(Debug, Default)]
pub(super) struct SimBtrfs {
    pub(super) subvolumes: BTreeSet<String>,
    pub(super) files: BTreeMap<String, Vec<u8>>,
}

impl State {
    /// The btrfs device and the path inside its top level that a path under a btrfs mount names.
    pub(super) fn btrfs_path(&self, path: &str) -> Option<(String, String)> {
        let mount = self
            .mounts
            .iter()
            .rev()
            .filter(|m| m.fs_type == "btrfs")
            .filter(|m| path == m.target || path.strip_prefix(&m.target).is_some_and(|rest| rest.starts_with('/')))
            .max_by_key(|m| m.target.len())?;
        let rest = path[mount.target.len()..].trim_matches('/');
        let subvolume = self.btrfs_mounted_subvolume.get(&mount.target).cloned().unwrap_or_default();
        let inner = [subvolume.trim_matches('/'), rest].iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>();
        Some((mount.source.clone(), inner.join("/")))
    }

    /// `btrfs subvolume show|create PATH` and `btrfs filesystem mkswapfile --size N PATH`.
    pub(super) fn btrfs(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let path = args.last().copied().unwrap_or_default();
        let Some((device, inner)) = self.btrfs_path(path) else {
            return Err(failed(line, format!("ERROR: not a btrfs filesystem: {path}")));
        };
        let parent = inner.rsplit_once('/').map_or("", |(parent, _)| parent).to_string();
        let tree = self.btrfs.entry(device).or_default();
        let parent_there = parent.is_empty() || tree.subvolumes.contains(&parent);
        match args {
            ["subvolume", "show", ..] if tree.subvolumes.contains(&inner) => Ok(format!("{inner}\n")),
            ["subvolume", "show", ..] => Err(failed(line, format!("ERROR: cannot find {path}"))),
            ["subvolume", "create", ..] if tree.subvolumes.contains(&inner) || tree.files.contains_key(&inner) => {
                Err(failed(line, format!("ERROR: target path already exists: {path}")))
            }
            ["subvolume", "create", ..] if !parent_there => {
                Err(failed(line, format!("ERROR: cannot access {parent}: No such file or directory")))
            }
            ["subvolume", "create", ..] => {
                tree.subvolumes.insert(inner);
                Ok(format!("Create subvolume '{path}'\n"))
            }
            ["filesystem", "mkswapfile", "--size", size, _] if parent_there && !tree.files.contains_key(&inner) => {
                let size: usize = size.parse().map_err(|_| failed(line, format!("bad size {size}")))?;
                let mut bytes = vec![0; size.min(4096)];
                if bytes.len() == 4096 {
                    bytes[4086..].copy_from_slice(b"SWAPSPACE2");
                }
                tree.files.insert(inner, bytes);
                Ok(String::new())
            }
            _ => Err(failed(line, format!("the simulated btrfs cannot do {line}"))),
        }
    }
}
