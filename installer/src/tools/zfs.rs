//! A typed wrapper over `zpool` and `zfs`, reading ZFS 2.3's JSON output (`-j`). Keys go to the
//! programs' standard input.
//!
//! What ZFS reports is kept by a [`Zfs`] while nothing is written: the probes of one run ask the same
//! questions again and again (which pools are imported, whether a dataset exists), and each answer is a
//! program run, tens of milliseconds on a small machine and more under emulation. A pool's datasets are
//! read with one recursive listing, not one program per dataset.

use std::collections::BTreeMap;
use std::sync::Mutex;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use layouts::CommandLine;

use super::ToolOutputError;
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

/// A property as `zfs get -j` and `zpool get -j` show it: its value, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    /// `value`, as text (ZFS prints a number for some with `--json-int`).
    #[serde(with = "text")]
    pub value: String,
    /// `source`, where it was asked for (`-o ...,source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PropertySource>,
}

/// Where a property's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertySource {
    /// `type`: `LOCAL`, `INHERITED`, `DEFAULT`, `NONE`, `TEMPORARY`, `RECEIVED`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `data`: the dataset it is inherited from, or `-`.
    pub data: String,
}

impl Property {
    /// Whether ZFS shows it as not there: `-`, from no source.
    pub fn is_unset(&self) -> bool {
        self.value == "-" && self.source.as_ref().is_some_and(|s| s.kind.eq_ignore_ascii_case("none"))
    }

    /// Whether it was set on the dataset or pool itself.
    pub fn is_local(&self) -> bool {
        self.source.as_ref().is_some_and(|s| s.kind.eq_ignore_ascii_case("local"))
    }
}

/// One dataset or pool of a listing, with its properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertiesOf {
    /// `type`: `FILESYSTEM`, `VOLUME`, `POOL`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `properties`, by name.
    #[serde(default)]
    pub properties: BTreeMap<String, Property>,
}

/// `zfs get -j`: datasets by name, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetListing {
    /// `datasets`; ZFS prints nothing at all where there are none.
    #[serde(default)]
    pub datasets: BTreeMap<String, PropertiesOf>,
}

/// `zpool get -j`: pools by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolListing {
    /// `pools`.
    #[serde(default)]
    pub pools: BTreeMap<String, PropertiesOf>,
}

/// Every property of an imported pool's filesystems and volumes, with their sources: the one listing
/// that the probes and adopt both read ([`Zfs::all_properties`]).
pub fn properties_command(pool: &str) -> CommandLine {
    command(
        "zfs",
        &["get", "-j", "-r", "-p", "-t", "filesystem,volume", "-o", "name,property,value,source", "all", pool],
    )
}

/// The named properties of an imported pool's filesystems and volumes, with their sources: what the
/// executor's probes compare. ZFS works out each property it shows, and `all` (above) was most of a
/// ZFS mount's time after the import (0.5 s of 3.5 under emulation, `vm-tests bench`).
pub fn named_properties_command(pool: &str, properties: &[String]) -> CommandLine {
    let names = properties.join(",");
    command(
        "zfs",
        &["get", "-j", "-r", "-p", "-t", "filesystem,volume", "-o", "name,property,value,source", &names, pool],
    )
}

/// What [`Zfs`] always reads of a dataset, besides the properties it is asked to compare: its type and
/// GUID (identity), and its key's state (unlocking).
const READ_ALWAYS: [&str; 5] = ["type", "guid", "encryptionroot", "keystatus", "keylocation"];

/// Every property of an imported pool itself.
pub fn pool_properties_command(pool: &str) -> CommandLine {
    command("zpool", &["get", "-j", "-p", "all", pool])
}

const GET: &str = "zfs get -j";
const POOL_GET: &str = "zpool get -j";

impl DatasetListing {
    /// Reads `zfs get -j` output (nothing at all reads as no datasets, as ZFS prints nothing then).
    pub fn parse(text: &str) -> Result<DatasetListing, ToolOutputError> {
        parse_shape(GET, text, "not ZFS's property listing")
    }

    /// What `zfs get -j` prints for these datasets: what the simulator answers.
    pub fn print(&self) -> String {
        // Strings and maps of them always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl PoolListing {
    /// Reads `zpool get -j` output.
    pub fn parse(text: &str) -> Result<PoolListing, ToolOutputError> {
        parse_shape(POOL_GET, text, "not ZFS's property listing")
    }
}

/// Reads one of ZFS's JSON answers into its shape; "nothing at all" is the empty answer, as ZFS prints
/// nothing where there is nothing to list.
fn parse_shape<T: serde::de::DeserializeOwned>(
    tool: &'static str,
    text: &str,
    what: &str,
) -> Result<T, ToolOutputError> {
    super::read_json(tool, if text.trim().is_empty() { "{}" } else { text }, what)
}

/// A value as text: ZFS prints strings, and with `--json-int` numbers.
mod text {
    use super::{Deserialize, Deserializer, Serializer};
    use serde::de::Error;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(serde_json::Number),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        match Either::deserialize(deserializer) {
            Ok(Either::Text(text)) => Ok(text),
            Ok(Either::Number(n)) => Ok(n.to_string()),
            Err(_) => Err(D::Error::custom("a value that is neither text nor a number")),
        }
    }

    pub fn serialize<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }
}

/// Errors from ZFS commands or their output.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Its JSON is not of the shape read.
    #[error(transparent)]
    Shape(#[from] ToolOutputError),
    /// Its JSON could not be read.
    #[error("cannot read the JSON of `{command}`: {source}")]
    Json {
        /// Which command.
        command: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// `zpool status -j --json-int POOL`: what [`Zfs::status`] runs.
pub fn status_command(pool: &str) -> CommandLine {
    command("zpool", &["status", "-j", "--json-int", pool])
}

const STATUS: &str = "zpool status -j";

/// One pool's vdev tree, as `zpool status -j --json-int` shows it (the fields read; ZFS prints more). The
/// simulator prints the same value ([`PoolStatus::print`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// `name`.
    pub name: String,
    /// `state`, such as `ONLINE`.
    pub state: String,
    /// `pool_guid`, in decimal (a number with `--json-int`, a string without).
    #[serde(with = "decimal")]
    pub pool_guid: String,
    /// `vdevs`: one root vdev, named as the pool, whose `vdevs` are the data vdevs.
    pub vdevs: IndexMap<String, VdevStatus>,
    /// `logs`: the log vdevs, where there are any.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub logs: IndexMap<String, VdevStatus>,
    /// `special`: the special-allocation vdevs.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub special: IndexMap<String, VdevStatus>,
    /// `dedup`: the dedup-table vdevs.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub dedup: IndexMap<String, VdevStatus>,
    /// `l2cache`: the cache devices.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub l2cache: IndexMap<String, VdevStatus>,
    /// `spares`: the hot spares.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub spares: IndexMap<String, VdevStatus>,
}

/// A vdev in that tree: a group (`mirror`, `raidz`, the `root`) with members in `vdevs`, or a leaf
/// (`disk`, `file`) with its `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdevStatus {
    /// `name`: `mirror-0`, `raidz2-1`, or a leaf's device name.
    pub name: String,
    /// `vdev_type`: `root`, `mirror`, `raidz`, `disk`, `file`, ...
    pub vdev_type: String,
    /// `path`: a leaf's device, as the pool was made or imported with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `vdevs`: a group's members, in ZFS's order.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vdevs: IndexMap<String, VdevStatus>,
}

#[derive(Serialize, Deserialize)]
struct StatusReport {
    pools: IndexMap<String, PoolStatus>,
}

impl PoolStatus {
    /// Reads the status of `pool` from `zpool status -j` output; a field missing or of another form is an
    /// error naming it, and so is a report without the pool or without its root vdev.
    pub fn parse(pool: &str, text: &str) -> Result<PoolStatus, ToolOutputError> {
        let mut report: StatusReport = super::read_json(STATUS, text, "not ZFS's status")?;
        let status =
            report.pools.swap_remove(pool).ok_or_else(|| ToolOutputError::missing(STATUS, &format!("pools.{pool}")))?;
        if !status.vdevs.contains_key(pool) {
            return Err(ToolOutputError::missing(STATUS, &format!("pools.{pool}.vdevs.{pool}")));
        }
        Ok(status)
    }

    /// What `zpool status -j --json-int` prints for this pool alone: what the simulator answers.
    pub fn print(&self) -> String {
        let report = StatusReport { pools: IndexMap::from([(self.name.clone(), self.clone())]) };
        // Strings, numbers and maps of them always serialize.
        serde_json::to_string(&report).unwrap_or_default()
    }

    /// The data vdevs: the members of the root vdev.
    pub fn data(&self) -> impl Iterator<Item = &VdevStatus> {
        self.vdevs.values().flat_map(|root| root.vdevs.values())
    }

    /// Every leaf's path, of every class.
    pub fn paths(&self) -> Vec<String> {
        fn collect(vdev: &VdevStatus, paths: &mut Vec<String>) {
            paths.extend(vdev.path.clone());
            vdev.vdevs.values().for_each(|child| collect(child, paths));
        }
        let mut paths = Vec::new();
        for class in [&self.vdevs, &self.logs, &self.special, &self.dedup, &self.l2cache, &self.spares] {
            class.values().for_each(|vdev| collect(vdev, &mut paths));
        }
        paths
    }
}

/// A GUID in decimal: ZFS prints a number with `--json-int` (up to 2^64, more than JSON's integers of
/// other tools hold), a string without.
mod decimal {
    use super::{Deserialize, Deserializer, Serializer};
    use serde::de::Error;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(n.to_string()),
            Either::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Ok(text),
            Either::Text(text) => Err(D::Error::custom(format!("{text:?} is not a decimal GUID"))),
        }
    }

    pub fn serialize<S: Serializer>(value: &str, serializer: S) -> Result<S::Ok, S::Error> {
        match value.parse::<u64>() {
            Ok(n) => serializer.serialize_u64(n),
            Err(_) => serializer.serialize_str(value),
        }
    }
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
    /// The properties read of each dataset ([`Zfs::asking`]); `None`: all of them.
    properties: Option<Vec<String>>,
    seen: Mutex<Seen>,
    /// Held while a listing is read, so that steps probed at once read it once, not once each.
    reading: Mutex<()>,
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
        Zfs { system, properties: None, seen: Mutex::new(Seen::default()), reading: Mutex::new(()) }
    }

    /// A reader that reads only `properties` of each dataset (and what it always needs: type, GUID and
    /// the key's state), not all of them. A property not set reads as absent, as in a listing of all.
    pub fn asking(system: &'a dyn System, properties: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = READ_ALWAYS.iter().map(|name| name.to_string()).chain(properties).collect();
        names.sort();
        names.dedup();
        Zfs { properties: Some(names), ..Zfs::new(system) }
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
        let _one_reader = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
        Ok(self.status(pool)?.paths())
    }

    /// The filesystems and volumes of an imported pool, from one recursive listing.
    fn datasets(&self, pool: &str) -> Result<BTreeMap<String, Dataset>, ZfsError> {
        if let Some(datasets) = self.seen().datasets.get(pool) {
            return Ok(datasets.clone());
        }
        let _one_reader = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(datasets) = self.seen().datasets.get(pool) {
            return Ok(datasets.clone());
        }
        // Besides type and the key's state, the probes compare the planned properties.
        let listing = match &self.properties {
            None => self.all_properties(pool)?,
            Some(names) => {
                let output = self.system.run(&named_properties_command(pool, names), None)?;
                DatasetListing::parse(&output)?
            }
        };
        let datasets: BTreeMap<String, Dataset> = listing
            .datasets
            .into_iter()
            .map(|(name, entry)| {
                // Asked by name, ZFS shows a property that is not set (or not of this type) as "-" from
                // nowhere; a listing of all leaves it out.
                let properties: BTreeMap<String, String> = entry
                    .properties
                    .into_iter()
                    .filter(|(_, property)| !property.is_unset())
                    .map(|(key, property)| (key, property.value))
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
    pub fn status(&self, pool: &str) -> Result<PoolStatus, ZfsError> {
        let line = status_command(pool);
        let output = self.system.run(&line, None)?;
        PoolStatus::parse(pool, &output).map_err(ZfsError::Shape)
    }

    /// Every property of a pool's datasets ([`properties_command`]), with where each value comes from.
    pub fn all_properties(&self, pool: &str) -> Result<DatasetListing, ZfsError> {
        let output = self.system.run(&properties_command(pool), None)?;
        Ok(DatasetListing::parse(&output)?)
    }

    /// Every property of a pool ([`pool_properties_command`]), with where each value comes from.
    pub fn pool_properties(&self, pool: &str) -> Result<PoolListing, ZfsError> {
        let output = self.system.run(&pool_properties_command(pool), None)?;
        Ok(PoolListing::parse(&output)?)
    }

    /// Loads the key of an encryption root.
    pub fn load_key(&self, dataset: &str, passphrase: Option<&Secret>) -> Result<(), ZfsError> {
        self.run(&command("zfs", &["load-key", dataset]), passphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured in the VM (`vm-tests zfs-special-dedup` and `mirror-native`, lib/verify.sh), from ZFS 2.3.
    pub(crate) const SPECIAL_DEDUP: &str = include_str!("../../tests/fixtures/zpool-status-special-dedup.json");
    const MIRROR: &str = include_str!("../../tests/fixtures/zpool-status-mirror.json");

    fn shape(vdevs: &IndexMap<String, VdevStatus>) -> Vec<(String, String, usize)> {
        vdevs.values().map(|v| (v.name.clone(), v.vdev_type.clone(), v.vdevs.len())).collect()
    }

    #[test]
    fn zfss_own_status_is_read_field_for_field() {
        let status = PoolStatus::parse("tank", SPECIAL_DEDUP).expect("the fixture reads");
        assert_eq!((status.name.as_str(), status.state.as_str()), ("tank", "ONLINE"));
        assert_eq!(status.pool_guid, "16841655510666904453", "a GUID above 2^63 as ZFS printed it");
        let data: Vec<&str> = status.data().map(|v| v.name.as_str()).collect();
        assert_eq!(data, ["mirror-0"]);
        assert_eq!(shape(&status.logs), [("virtio-c0-part5".into(), "disk".into(), 0)]);
        assert_eq!(shape(&status.special), [("mirror-2".into(), "mirror".into(), 2)]);
        assert_eq!(shape(&status.dedup), [("mirror-3".into(), "mirror".into(), 2)]);
        assert_eq!(shape(&status.l2cache), [("virtio-c1-part5".into(), "disk".into(), 0)]);
        assert!(status.spares.is_empty());
        let paths = status.paths();
        assert_eq!(paths.len(), 8, "{paths:?}");
        assert!(paths.iter().all(|p| p.starts_with("/dev/disk/by-id/virtio-c")), "{paths:?}");
        let mirror = PoolStatus::parse("rpool", MIRROR).expect("the mirror reads");
        assert_eq!(mirror.paths().len(), 2);
        assert!(mirror.logs.is_empty() && mirror.l2cache.is_empty());
    }

    /// Every field the adapter prints (what the simulator answers) is in ZFS's own output, with its value.
    fn within(printed: &serde_json::Value, real: &serde_json::Value) -> Result<(), String> {
        match (printed, real) {
            (serde_json::Value::Object(printed), serde_json::Value::Object(real)) => {
                for (key, value) in printed {
                    let there = real.get(key).ok_or_else(|| format!("{key} is not in ZFS's output"))?;
                    within(value, there).map_err(|e| format!("{key}.{e}"))?;
                }
                Ok(())
            }
            _ if printed == real => Ok(()),
            _ => Err(format!(" is {printed}, ZFS printed {real}")),
        }
    }

    #[test]
    fn what_the_simulator_prints_is_zfss_field_for_field() {
        for (pool, fixture) in [("tank", SPECIAL_DEDUP), ("rpool", MIRROR)] {
            let status = PoolStatus::parse(pool, fixture).expect("the fixture reads");
            let printed: serde_json::Value = serde_json::from_str(&status.print()).expect("JSON");
            let real: serde_json::Value = serde_json::from_str(fixture).expect("JSON");
            within(&printed, &real).expect("a field ZFS did not print");
            assert_eq!(PoolStatus::parse(pool, &status.print()).expect("reads back"), status);
        }
    }

    /// Captured in the VM (`vm-tests mirror-native`, lib/verify.sh): `properties_command` and
    /// `pool_properties_command` of its natively encrypted pool.
    pub(crate) const DATASETS: &str = include_str!("../../tests/fixtures/zfs-get-all-rpool.json");
    const POOL: &str = include_str!("../../tests/fixtures/zpool-get-all-rpool.json");

    #[test]
    fn zfss_own_property_listings_are_read_with_their_sources() {
        let listing = DatasetListing::parse(DATASETS).expect("zfs get reads");
        let names: Vec<&str> = listing.datasets.keys().map(String::as_str).collect();
        assert_eq!(names, ["rpool", "rpool/home", "rpool/nix", "rpool/root", "rpool/var"]);
        let root = &listing.datasets["rpool"];
        assert_eq!(root.kind, "FILESYSTEM");
        assert!(root.properties["keylocation"].is_local() && root.properties["keylocation"].value == "prompt");
        assert!(!root.properties["encryption"].is_local(), "fixed at creation, not set");
        let nix = &listing.datasets["rpool/nix"].properties;
        assert!(nix["atime"].is_local() && nix["atime"].value == "off");
        let inherited = nix["compression"].source.as_ref().expect("a source");
        assert_eq!((inherited.kind.as_str(), inherited.data.as_str()), ("INHERITED", "rpool"));
        assert!(nix["guid"].value.parse::<u64>().is_ok());
        let pool = PoolListing::parse(POOL).expect("zpool get reads");
        let properties = &pool.pools["rpool"].properties;
        assert!(properties["ashift"].is_local() && properties["ashift"].value == "12");
        assert_eq!(properties["altroot"].value, "/mnt");
        assert_eq!(DatasetListing::parse("").expect("nothing"), DatasetListing::default(), "ZFS prints nothing");
    }

    #[test]
    fn a_printed_listing_is_zfss_field_for_field() {
        let listing = DatasetListing::parse(DATASETS).expect("zfs get reads");
        let printed: serde_json::Value = serde_json::from_str(&listing.print()).expect("JSON");
        let real: serde_json::Value = serde_json::from_str(DATASETS).expect("JSON");
        within(&printed, &real).expect("a field ZFS did not print");
        assert_eq!(DatasetListing::parse(&listing.print()).expect("reads back"), listing);
    }

    #[test]
    fn a_changed_shape_names_the_tool_and_the_field() {
        let error = DatasetListing::parse(&DATASETS.replacen("\"value\":", "\"val\":", 1)).expect_err("renamed");
        assert_eq!(error.tool, "zfs get -j");
        assert!(error.field.starts_with("datasets.rpool.properties."), "{error}");
        let error = PoolListing::parse(&POOL.replacen("\"properties\":{", "\"properties\":[{", 1)).expect_err("a list");
        assert_eq!(error.tool, "zpool get -j");
        let error =
            PoolStatus::parse("tank", &SPECIAL_DEDUP.replacen("\"vdev_type\"", "\"type\"", 1)).expect_err("renamed");
        assert_eq!(error.tool, "zpool status -j");
        assert_eq!(error.field, "pools.tank.vdevs.tank.vdev_type", "{error}");
        let error =
            PoolStatus::parse("tank", &SPECIAL_DEDUP.replacen("\"pool_guid\":", "\"pool_guid\":\"x\",\"o\":", 1))
                .expect_err("not a GUID");
        assert_eq!(error.field, "pools.tank.pool_guid", "{error}");
        assert!(PoolStatus::parse("other", SPECIAL_DEDUP)
            .expect_err("no such pool")
            .to_string()
            .contains("pools.other"));
        assert!(PoolStatus::parse("tank", "").is_err(), "empty output is no pool");
    }
}
