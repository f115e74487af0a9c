//! A typed wrapper over `zpool` and `zfs`, reading ZFS 2.3's JSON output (`-j`). Keys go to the
//! programs' standard input.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::command::{self, CommandError};
use crate::secret::Secret;

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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn json<T: serde::de::DeserializeOwned>(program: &str, arguments: Vec<String>) -> Result<T, ZfsError> {
    let output = command::run(program, &arguments, None)?;
    // With nothing to report (no pools) the commands print nothing at all.
    let output = if output.trim().is_empty() { "{}" } else { output.as_str() };
    serde_json::from_str(output).map_err(|source| ZfsError::Json { command: format!("{program} {}", arguments.join(" ")), source })
}

/// The names of the imported pools.
pub fn imported_pools() -> Result<Vec<String>, ZfsError> {
    let list: PoolList = json("zpool", args(&["list", "-j"]))?;
    Ok(list.pools.into_keys().collect())
}

/// `zpool status -j --json-int` of one pool, as JSON.
pub fn pool_status(pool: &str) -> Result<serde_json::Value, ZfsError> {
    json("zpool", args(&["status", "-j", "--json-int", pool]))
}

/// `zpool create` with the given arguments; the passphrase, when one is needed, on standard input.
pub fn create_pool(arguments: &[String], passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    command::run("zpool", arguments, passphrase.map(Secret::expose))?;
    Ok(())
}

/// Imports a pool without mounting anything, under `altroot`.
pub fn import_pool(pool: &str, altroot: &str) -> Result<(), ZfsError> {
    command::run("zpool", &args(&["import", "-N", "-R", altroot, pool]), None)?;
    Ok(())
}

/// Exports a pool.
pub fn export_pool(pool: &str) -> Result<(), ZfsError> {
    command::run("zpool", &args(&["export", pool]), None)?;
    Ok(())
}

/// One dataset as `zfs list` and `zfs get` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// "FILESYSTEM" or "VOLUME".
    pub kind: String,
    /// The properties asked for, as text.
    pub properties: BTreeMap<String, String>,
}

/// A dataset with the given properties, or `None` when it does not exist.
pub fn dataset(name: &str, properties: &[&str]) -> Result<Option<Dataset>, ZfsError> {
    let mut arguments = args(&["get", "-j", "-p", "-o", "name,property,value"]);
    let mut wanted: Vec<&str> = vec!["type"];
    wanted.extend(properties);
    arguments.push(wanted.join(","));
    arguments.push(name.to_string());
    let output = match command::run("zfs", &arguments, None) {
        Ok(output) => output,
        Err(CommandError::Failed { stderr, .. }) if stderr.contains("does not exist") => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let list: DatasetList = serde_json::from_str(&output).map_err(|source| ZfsError::Json { command: format!("zfs {}", arguments.join(" ")), source })?;
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

/// `zfs create` with the given arguments; the passphrase, when one is needed, on standard input.
pub fn create_dataset(arguments: &[String], passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    command::run("zfs", arguments, passphrase.map(Secret::expose))?;
    Ok(())
}

/// Every encryption root under `pool` whose key is not loaded, with its key location.
pub fn locked_encryption_roots(pool: &str) -> Result<Vec<(String, String)>, ZfsError> {
    let list: DatasetList = json("zfs", args(&["get", "-j", "-r", "-p", "encryptionroot,keystatus,keylocation", pool]))?;
    let mut locked = Vec::new();
    for (name, entry) in list.datasets {
        let property = |key: &str| entry.properties.get(key).and_then(|v| v.value.as_str().map(str::to_string)).unwrap_or_default();
        if property("encryptionroot") == name && property("keystatus") == "unavailable" {
            locked.push((name.clone(), property("keylocation")));
        }
    }
    Ok(locked)
}

/// Loads the key of an encryption root: from its key file, or the passphrase on standard input.
pub fn load_key(dataset: &str, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
    command::run("zfs", &args(&["load-key", dataset]), passphrase.map(Secret::expose))?;
    Ok(())
}
