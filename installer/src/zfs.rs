//! A typed wrapper over `zpool` and `zfs`, reading ZFS 2.3's JSON output (`-j`). Keys go to the
//! programs' standard input.
//!
//! What ZFS reports is kept by a [`Zfs`] while nothing is written: the probes of one run ask the same
//! questions again and again (which pools are imported, whether a dataset exists), and each answer is a
//! program run, tens of milliseconds on a small machine and more under emulation. A pool's datasets are
//! read with one recursive listing, not one program per dataset.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Deserialize;

use layouts::CommandLine;

use crate::command::CommandError;
use crate::secret::Secret;
use crate::system::System;

#[derive(Debug, Deserialize)]
struct PoolList {
    #[serde(default)]
    pools: BTreeMap<String, PoolEntry>,
}

#[derive(Debug, Deserialize)]
struct PoolEntry {
    /// A string, or a number with `--json-int`; absent from older output.
    #[serde(default)]
    pool_guid: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct DatasetList {
    #[serde(default)]
    datasets: BTreeMap<String, DatasetEntry>,
}

#[derive(Debug, Deserialize)]
struct DatasetEntry {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    properties: BTreeMap<String, PropertyValue>,
}

#[derive(Debug, Deserialize)]
struct PropertyValue {
    value: serde_json::Value,
}

/// Errors from ZFS commands or their output.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Its JSON could not be read.
    #[error("cannot read the JSON of `{command}`: {source}")]
    Json {
        /// Which command.
        command: String,
        /// Why.
        source: serde_json::Error,
    },
}

fn command(program: &str, args: &[&str]) -> CommandLine {
    CommandLine::new(program, args.iter().copied())
}

fn json<T: serde::de::DeserializeOwned>(sys: &dyn System, line: CommandLine) -> Result<T, ZfsError> {
    let output = sys.run(&line, None)?;
    // With nothing to report (no pools) the commands print nothing at all.
    let output = if output.trim().is_empty() { "{}" } else { output.as_str() };
    serde_json::from_str(output).map_err(|source| ZfsError::Json { command: line.to_string(), source })
}

/// Reads ZFS through one system and keeps what it read until [`Zfs::forget`] or a write through it.
/// Whoever writes to ZFS or to the devices under it by other means (the executor, after each step it
/// performs) calls [`Zfs::forget`].
pub struct Zfs<'a> {
    system: &'a dyn System,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Zfs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zfs").field("pools", &self.seen().pools).finish_non_exhaustive()
    }
}

/// What has been read since the last write.
#[derive(Default)]
struct Seen {
    /// Imported pools with their GUIDs when the listing gave them.
    pools: Option<BTreeMap<String, Option<String>>>,
    /// Per imported pool: its filesystems and volumes.
    datasets: BTreeMap<String, BTreeMap<String, Dataset>>,
}

/// A dataset's type and the properties the executor asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// FILESYSTEM or VOLUME.
    pub kind: String,
    /// Every property ZFS shows for it (`zfs get -p all`), as text.
    pub properties: BTreeMap<String, String>,
}

impl Dataset {
    fn property(&self, key: &str) -> &str {
        self.properties.get(key).map_or("", String::as_str)
    }
}

impl<'a> Zfs<'a> {
    /// A reader with nothing seen yet.
    pub fn new(system: &'a dyn System) -> Self {
        Zfs { system, seen: Mutex::new(Seen::default()) }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops everything read: the next question runs the programs again.
    pub fn forget(&self) {
        *self.seen() = Seen::default();
    }

    fn pools(&self) -> Result<BTreeMap<String, Option<String>>, ZfsError> {
        if let Some(pools) = &self.seen().pools {
            return Ok(pools.clone());
        }
        let list: PoolList = json(self.system, command("zpool", &["list", "-j"]))?;
        let pools: BTreeMap<String, Option<String>> = list
            .pools
            .into_iter()
            .map(|(name, entry)| {
                let guid = entry.pool_guid.map(|g| g.as_str().map(str::to_string).unwrap_or_else(|| g.to_string()));
                (name, guid)
            })
            .collect();
        self.seen().pools = Some(pools.clone());
        Ok(pools)
    }

    /// The names of the imported pools.
    pub fn imported_pools(&self) -> Result<Vec<String>, ZfsError> {
        Ok(self.pools()?.into_keys().collect())
    }

    /// The GUID of an imported pool.
    pub fn pool_guid(&self, pool: &str) -> Result<String, ZfsError> {
        if let Some(Some(guid)) = self.pools()?.get(pool) {
            return Ok(guid.clone());
        }
        let line = command("zpool", &["get", "-H", "-p", "-o", "value", "guid", pool]);
        Ok(self.system.run(&line, None)?.trim().to_string())
    }

    /// The devices an imported pool is made of, as `zpool status` gives their paths (every vdev class).
    pub fn pool_members(&self, pool: &str) -> Result<Vec<String>, ZfsError> {
        let status: serde_json::Value = json(self.system, command("zpool", &["status", "-j", "--json-int", pool]))?;
        let mut paths = Vec::new();
        collect_paths(&status["pools"][pool], &mut paths);
        Ok(paths)
    }

    /// The filesystems and volumes of an imported pool, from one recursive listing.
    fn datasets(&self, pool: &str) -> Result<BTreeMap<String, Dataset>, ZfsError> {
        if let Some(datasets) = self.seen().datasets.get(pool) {
            return Ok(datasets.clone());
        }
        // Every property: besides type and the key's state, the probes compare the planned properties.
        let line = command(
            "zfs",
            &["get", "-j", "-r", "-p", "-t", "filesystem,volume", "-o", "name,property,value", "all", pool],
        );
        let list: DatasetList = json(self.system, line)?;
        let datasets: BTreeMap<String, Dataset> = list
            .datasets
            .into_iter()
            .map(|(name, entry)| {
                let properties: BTreeMap<String, String> = entry
                    .properties
                    .into_iter()
                    .map(|(k, v)| (k, v.value.as_str().map(str::to_string).unwrap_or_else(|| v.value.to_string())))
                    .collect();
                let kind = properties.get("type").cloned().unwrap_or(entry.kind).to_ascii_uppercase();
                (name, Dataset { kind, properties })
            })
            .collect();
        self.seen().datasets.insert(pool.to_string(), datasets.clone());
        Ok(datasets)
    }

    /// A dataset, or `None` when it does not exist (its pool is not imported, or has no such dataset).
    pub fn dataset(&self, name: &str) -> Result<Option<Dataset>, ZfsError> {
        let pool = name.split('/').next().unwrap_or(name);
        if !self.pools()?.contains_key(pool) {
            return Ok(None);
        }
        Ok(self.datasets(pool)?.remove(name))
    }

    /// The encryption roots of an imported pool whose key is not loaded, with their key locations.
    pub fn locked_encryption_roots(&self, pool: &str) -> Result<Vec<(String, String)>, ZfsError> {
        Ok(self
            .datasets(pool)?
            .into_iter()
            .filter(|(name, d)| d.property("encryptionroot") == name && d.property("keystatus") == "unavailable")
            .map(|(name, d)| {
                let location = d.property("keylocation").to_string();
                (name, location)
            })
            .collect())
    }

    /// Runs a `zpool` or `zfs` command line (a step's own), with the key, if any, on standard input.
    pub fn run(&self, line: &CommandLine, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
        let result = self.system.run(line, passphrase);
        self.forget();
        result?;
        Ok(())
    }

    /// Imports a pool without mounting anything, under `altroot`, looking for it on `devices` only: a
    /// pool of the same name on any other disk is never picked up.
    pub fn import_pool(&self, pool: &str, altroot: &str, force: bool, devices: &[String]) -> Result<(), ZfsError> {
        let mut args = vec!["import"];
        if force {
            args.push("-f");
        }
        for device in devices {
            args.extend(["-d", device.as_str()]);
        }
        args.extend(["-N", "-R", altroot, pool]);
        self.run(&command("zpool", &args), None)
    }

    /// Imports a pool read-only, without mounting anything, under `altroot`, from `devices` only: for
    /// reading it back. Forced: a read-only import writes nothing to the disks, so a pool another system
    /// (the installed one) used last is read without taking it over.
    pub fn import_read_only(&self, pool: &str, altroot: &str, devices: &[String]) -> Result<(), ZfsError> {
        let mut args = vec!["import", "-f", "-o", "readonly=on"];
        for device in devices {
            args.extend(["-d", device.as_str()]);
        }
        args.extend(["-N", "-R", altroot, pool]);
        self.run(&command("zpool", &args), None)
    }

    /// Exports a pool.
    pub fn export(&self, pool: &str) -> Result<(), ZfsError> {
        self.run(&command("zpool", &["export", pool]), None)
    }

    /// `zpool status -j --json-int` of an imported pool: its vdev tree.
    pub fn status(&self, pool: &str) -> Result<serde_json::Value, ZfsError> {
        json(self.system, command("zpool", &["status", "-j", "--json-int", pool]))
    }

    /// Every property of a pool's datasets (`zfs get -j -p -r all`), with where each value comes from.
    pub fn all_properties(&self, pool: &str) -> Result<serde_json::Value, ZfsError> {
        let line = command(
            "zfs",
            &["get", "-j", "-r", "-p", "-t", "filesystem,volume", "-o", "name,property,value,source", "all", pool],
        );
        json(self.system, line)
    }

    /// Every property of a pool (`zpool get -j -p all`), with where each value comes from.
    pub fn pool_properties(&self, pool: &str) -> Result<serde_json::Value, ZfsError> {
        json(self.system, command("zpool", &["get", "-j", "-p", "all", pool]))
    }

    /// Loads the key of an encryption root.
    pub fn load_key(&self, dataset: &str, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
        self.run(&command("zfs", &["load-key", dataset]), passphrase)
    }
}

/// Every leaf's `path` in a `zpool status -j` tree.
fn collect_paths(value: &serde_json::Value, paths: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(path)) = map.get("path") {
                paths.push(path.clone());
            }
            map.iter().filter(|(key, _)| *key != "path").for_each(|(_, child)| collect_paths(child, paths));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_paths(item, paths)),
        _ => {}
    }
}
