//! A typed wrapper over `zpool` and `zfs`, reading ZFS 2.3's JSON output (`-j`). Keys go to the
//! programs' standard input.

use std::collections::BTreeMap;

use serde::Deserialize;

use layouts::CommandLine;

use crate::command::CommandError;
use crate::secret::Secret;
use crate::system::System;

#[derive(Debug, Deserialize)]
struct PoolList {
    #[serde(default)]
    pools: BTreeMap<String, serde_json::Value>,
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

/// The names of the imported pools.
pub fn imported_pools(sys: &dyn System) -> Result<Vec<String>, ZfsError> {
    let list: PoolList = json(sys, command("zpool", &["list", "-j"]))?;
    Ok(list.pools.into_keys().collect())
}

/// Runs `zpool create` (or any zpool command) with the key, if any, on standard input.
pub fn zpool(sys: &dyn System, line: &CommandLine, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    sys.run(line, passphrase)?;
    Ok(())
}

/// Imports a pool without mounting anything, under `altroot`, looking for it on `devices` only: a pool
/// of the same name on any other disk is never picked up.
pub fn import_pool(
    sys: &dyn System,
    pool: &str,
    altroot: &str,
    force: bool,
    devices: &[String],
) -> Result<(), ZfsError> {
    let mut args = vec!["import"];
    if force {
        args.push("-f");
    }
    for device in devices {
        args.extend(["-d", device.as_str()]);
    }
    args.extend(["-N", "-R", altroot, pool]);
    sys.run(&command("zpool", &args), None)?;
    Ok(())
}

/// The GUID of an imported pool.
pub fn pool_guid(sys: &dyn System, pool: &str) -> Result<String, ZfsError> {
    Ok(sys.run(&command("zpool", &["get", "-H", "-p", "-o", "value", "guid", pool]), None)?.trim().to_string())
}

/// The devices an imported pool is made of, as `zpool status` gives their paths (every vdev class).
pub fn pool_members(sys: &dyn System, pool: &str) -> Result<Vec<String>, ZfsError> {
    let status: serde_json::Value = json(sys, command("zpool", &["status", "-j", "--json-int", pool]))?;
    let mut paths = Vec::new();
    collect_paths(&status["pools"][pool], &mut paths);
    Ok(paths)
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

/// A dataset's type (`FILESYSTEM`, `VOLUME`) and the properties asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// FILESYSTEM, VOLUME or SNAPSHOT.
    pub kind: String,
    /// Property values as text.
    pub properties: BTreeMap<String, String>,
}

/// Reads a dataset, or `None` when it does not exist.
pub fn dataset(sys: &dyn System, name: &str, properties: &[&str]) -> Result<Option<Dataset>, ZfsError> {
    let mut wanted: Vec<&str> = vec!["type"];
    wanted.extend(properties);
    let wanted = wanted.join(",");
    let line = command("zfs", &["get", "-j", "-p", "-o", "name,property,value", &wanted, name]);
    let output = match sys.run(&line, None) {
        Ok(output) => output,
        Err(CommandError::Failed { stderr, .. }) if stderr.contains("does not exist") => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let list: DatasetList =
        serde_json::from_str(&output).map_err(|source| ZfsError::Json { command: line.to_string(), source })?;
    Ok(list.datasets.into_iter().next().map(|(_, entry)| {
        let properties: BTreeMap<String, String> = entry
            .properties
            .into_iter()
            .map(|(k, v)| (k, v.value.as_str().map(str::to_string).unwrap_or_else(|| v.value.to_string())))
            .collect();
        let kind = properties.get("type").cloned().unwrap_or(entry.kind).to_ascii_uppercase();
        Dataset { kind, properties }
    }))
}

/// Runs `zfs create` (or any zfs command) with the key, if any, on standard input.
pub fn zfs(sys: &dyn System, line: &CommandLine, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    sys.run(line, passphrase)?;
    Ok(())
}

/// The encryption roots of a pool whose key is not loaded, with their key locations.
pub fn locked_encryption_roots(sys: &dyn System, pool: &str) -> Result<Vec<(String, String)>, ZfsError> {
    let list: DatasetList =
        json(sys, command("zfs", &["get", "-j", "-r", "-p", "encryptionroot,keystatus,keylocation", pool]))?;
    let mut locked = Vec::new();
    for (name, entry) in list.datasets {
        let property = |key: &str| {
            entry.properties.get(key).and_then(|v| v.value.as_str().map(str::to_string)).unwrap_or_default()
        };
        if property("encryptionroot") == name && property("keystatus") == "unavailable" {
            locked.push((name.clone(), property("keylocation")));
        }
    }
    Ok(locked)
}

/// Loads the key of an encryption root.
pub fn load_key(sys: &dyn System, dataset: &str, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    sys.run(&command("zfs", &["load-key", dataset]), passphrase)?;
    Ok(())
}
