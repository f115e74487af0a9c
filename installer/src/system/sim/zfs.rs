//! The simulated ZFS: pools and datasets, answering `zpool list -j`, `zpool status -j`, `zpool get -j` and
//! `zfs get -j` in ZFS 2.3's JSON, and taking keys on standard input.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use layouts::steps::CommandLine;
use serde_json::{json, Map, Value};

use super::{failed, State};
use crate::command::CommandError;
use crate::secret::Secret;
use crate::tools::zfs::{DatasetListing, PoolStatus, PropertiesOf, Property, PropertySource, VdevStatus};

/// The properties of a dataset's encryption, which ZFS shows as fixed (source `NONE`) on the encryption
/// root and everything under it, but for the root's own `keylocation`.
const ENCRYPTION_PROPERTIES: [&str; 4] = ["encryption", "keyformat", "keylocation", "pbkdf2iters"];

/// A value as ZFS 2.3 shows it: aliases by the name it shows (seen in the VM's `zfs get`, the fixture
/// `zfs-get-all-rpool.json`: `acltype=posixacl` shows as `posix`, `xattr=sa` as `on`).
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    match (key, value) {
        ("acltype", "posixacl") => "posix",
        ("acltype", "noacl") => "off",
        ("xattr", "sa") => "on",
        _ => value,
    }
}

/// The words of `zpool create` that are not devices.
const KEYWORDS: [&str; 9] = ["mirror", "raidz1", "raidz2", "raidz3", "log", "special", "dedup", "cache", "spare"];

/// The vdev tree `zpool create` makes of the words after the pool's name (devices canonical).
pub(super) fn vdev_tree(name: &str, guid: u64, words: &[String]) -> PoolStatus {
    let root = VdevStatus { name: name.to_string(), vdev_type: "root".to_string(), ..VdevStatus::default() };
    let mut status = PoolStatus {
        name: name.to_string(),
        state: "ONLINE".to_string(),
        pool_guid: guid.to_string(),
        vdevs: IndexMap::from([(name.to_string(), root)]),
        ..PoolStatus::default()
    };
    add_vdevs(&mut status, words);
    status
}

fn leaf(device: &str) -> VdevStatus {
    VdevStatus {
        name: device.rsplit('/').next().unwrap_or(device).to_string(),
        vdev_type: "disk".to_string(),
        path: Some(device.to_string()),
        vdevs: IndexMap::new(),
    }
}

/// The vdevs of a class (`zpool create`'s word for it; "" for the data vdevs).
fn class<'a>(status: &'a mut PoolStatus, word: &str) -> &'a mut IndexMap<String, VdevStatus> {
    match word {
        "log" => &mut status.logs,
        "special" => &mut status.special,
        "dedup" => &mut status.dedup,
        "cache" => &mut status.l2cache,
        "spare" => &mut status.spares,
        _ => {
            if status.vdevs.is_empty() {
                let root =
                    VdevStatus { name: status.name.clone(), vdev_type: "root".to_string(), ..VdevStatus::default() };
                status.vdevs.insert(status.name.clone(), root);
            }
            &mut status.vdevs[0].vdevs
        }
    }
}

/// The top-level vdevs, which ZFS numbers in the order they were made (cache devices and spares are
/// none).
fn top_level_count(status: &mut PoolStatus) -> usize {
    ["", "log", "special", "dedup"].iter().map(|word| class(status, word).len()).sum()
}

/// Adds the vdevs of `zpool create` or `zpool add` words, named as ZFS names them (`mirror-0`,
/// `raidz2-1`: the number is the top-level vdev's).
fn add_vdevs(status: &mut PoolStatus, words: &[String]) {
    let mut top = top_level_count(status);
    let mut current = "";
    let mut open: Option<VdevStatus> = None;
    let close = |status: &mut PoolStatus, current: &str, open: Option<VdevStatus>| {
        if let Some(done) = open {
            class(status, current).insert(done.name.clone(), done);
        }
    };
    for word in words {
        match word.as_str() {
            word @ ("log" | "special" | "dedup" | "cache" | "spare") => {
                close(status, current, open.take());
                current = word;
            }
            kind @ ("mirror" | "raidz1" | "raidz2" | "raidz3") => {
                close(status, current, open.take());
                let vdev_type = if kind == "mirror" { "mirror" } else { "raidz" };
                open = Some(VdevStatus {
                    name: format!("{kind}-{top}"),
                    vdev_type: vdev_type.to_string(),
                    ..VdevStatus::default()
                });
                top += 1;
            }
            device => {
                let member = leaf(device);
                match &mut open {
                    Some(vdev) => {
                        vdev.vdevs.insert(member.name.clone(), member);
                    }
                    None => {
                        class(status, current).insert(member.name.clone(), member);
                        if current != "cache" && current != "spare" {
                            top += 1;
                        }
                    }
                }
            }
        }
    }
    close(status, current, open.take());
}

/// `zpool attach POOL EXISTING NEW`: NEW joins the mirror EXISTING is in, or EXISTING, a plain
/// top-level device, becomes a mirror of the two (named by its place among the top-level vdevs).
fn attach(status: &mut PoolStatus, existing: &str, new: &str) {
    for word in ["", "log", "special", "dedup"] {
        let vdevs = class(status, word);
        if let Some(mirror) = vdevs.values_mut().find(|v| v.vdevs.values().any(|l| l.path.as_deref() == Some(existing)))
        {
            let member = leaf(new);
            mirror.vdevs.insert(member.name.clone(), member);
            return;
        }
        if let Some(index) = vdevs.values().position(|v| v.path.as_deref() == Some(existing)) {
            let old = leaf(existing);
            let member = leaf(new);
            let mirror = VdevStatus {
                name: format!("mirror-{index}"),
                vdev_type: "mirror".to_string(),
                path: None,
                vdevs: IndexMap::from([(old.name.clone(), old), (member.name.clone(), member)]),
            };
            vdevs.shift_remove_index(index);
            vdevs.shift_insert(index, mirror.name.clone(), mirror);
            return;
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct SimDataset {
    pub(super) volume: bool,
    pub(super) encryption_root: Option<String>,
    pub(super) keylocation: String,
    /// Properties given at creation or set since, as ZFS shows them.
    pub(super) properties: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub(super) struct SimPool {
    /// The pool's GUID, new with every `zpool create`.
    pub(super) guid: u64,
    /// Member devices, canonical.
    pub(super) members: Vec<String>,
    /// What `zpool status` shows of it: its vdevs as made.
    pub(super) tree: PoolStatus,
    pub(super) imported: bool,
    pub(super) exported_cleanly: bool,
    /// The host id of the system that last imported it.
    pub(super) host_id: Option<u32>,
    pub(super) datasets: BTreeMap<String, SimDataset>,
    /// Encryption roots whose key is loaded.
    pub(super) unlocked: BTreeSet<String>,
    pub(super) key: Vec<u8>,
}

impl State {
    pub(super) fn zpool(
        &mut self,
        line: &CommandLine,
        args: &[&str],
        input: Option<&Secret>,
    ) -> Result<String, CommandError> {
        match args.first().copied() {
            Some("list") => {
                let pools: Map<String, Value> = self
                    .pools
                    .iter()
                    .filter(|(_, p)| p.imported)
                    .map(|(n, p)| (n.clone(), json!({ "name": n, "pool_guid": p.guid.to_string() })))
                    .collect();
                Ok(if pools.is_empty() { String::new() } else { json!({ "pools": pools }).to_string() })
            }
            Some("create") => {
                let mut root_options = BTreeMap::new();
                let mut words = args[1..].iter();
                let mut name = None;
                while let Some(word) = words.next() {
                    match *word {
                        "-f" => {}
                        "-o" | "-R" => {
                            words.next();
                        }
                        "-O" => {
                            if let Some((k, v)) = words.next().and_then(|kv| kv.split_once('=')) {
                                root_options.insert(k.to_string(), v.to_string());
                            }
                        }
                        pool => {
                            name = Some(pool.to_string());
                            break;
                        }
                    }
                }
                let name = name.ok_or_else(|| failed(line, "missing pool name"))?;
                let words: Vec<String> =
                    words.map(|w| if KEYWORDS.contains(w) { w.to_string() } else { self.canonical(w) }).collect();
                let members: Vec<String> = words.iter().filter(|w| !KEYWORDS.contains(&w.as_str())).cloned().collect();
                if self.pools.get(&name).is_some_and(|p| p.imported) {
                    return Err(failed(line, format!("cannot create '{name}': pool already exists")));
                }
                if let Some(missing) = members.iter().find(|m| !self.exists(m)) {
                    return Err(failed(line, format!("cannot open '{missing}': no such device")));
                }
                let encrypted = root_options.get("encryption").is_some_and(|e| e != "off");
                let keylocation = root_options.get("keylocation").cloned().unwrap_or_else(|| "prompt".into());
                let key = input.map(|k| k.expose().to_vec()).unwrap_or_default();
                if encrypted && keylocation == "prompt" && key.is_empty() {
                    return Err(failed(line, "no key given on standard input"));
                }
                self.next_uuid += 1;
                let guid = 0x5157_0000_0000_0000 | self.next_uuid;
                let host_id = self.host_id;
                let tree = vdev_tree(&name, guid, &words);
                let mut pool = SimPool {
                    guid,
                    members: members.clone(),
                    tree,
                    imported: true,
                    key,
                    host_id,
                    ..SimPool::default()
                };
                let root = SimDataset {
                    volume: false,
                    encryption_root: encrypted.then(|| name.clone()),
                    keylocation,
                    properties: root_options.clone(),
                };
                pool.datasets.insert(name.clone(), root);
                if encrypted {
                    pool.unlocked.insert(name.clone());
                }
                for member in &members {
                    let uuid = self.uuid();
                    self.set_signature(member, "zfs_member", Some(name.clone()), uuid);
                }
                self.pools.insert(name, pool);
                Ok(String::new())
            }
            Some("import") => {
                let force = args.contains(&"-f");
                let name = args.last().copied().unwrap_or_default().to_string();
                let host_id = self.host_id;
                let searched: Vec<String> =
                    args.windows(2).filter(|w| w[0] == "-d").map(|w| self.canonical(w[1])).collect();
                let pool = self
                    .pools
                    .get_mut(&name)
                    .ok_or_else(|| failed(line, format!("cannot import '{name}': no such pool available")))?;
                if pool.imported {
                    return Err(failed(line, format!("cannot import '{name}': a pool with that name already exists")));
                }
                // With -d, only the devices named are searched.
                if !searched.is_empty() && !pool.members.iter().all(|m| searched.contains(m)) {
                    return Err(failed(line, format!("cannot import '{name}': no such pool available")));
                }
                // ZFS imports a pool that was not exported only on the host that last used it, or forced.
                if !pool.exported_cleanly && pool.host_id != host_id && !force {
                    return Err(failed(
                        line,
                        format!(
                            "cannot import '{name}': pool was previously in use from \
                        another system. The pool can be imported, use 'zpool import -f' to import the pool."
                        ),
                    ));
                }
                pool.imported = true;
                pool.exported_cleanly = false;
                pool.host_id = host_id;
                Ok(String::new())
            }
            // `zpool attach [-f] [-o P=V] POOL EXISTING NEW` and `zpool add [-f] [-o P=V] POOL [CLASS] DEVICES`.
            Some(verb @ ("attach" | "add")) => {
                let mut words = args[1..].iter().copied().peekable();
                while let Some(&word) = words.peek() {
                    match word {
                        "-f" => {}
                        "-o" => {
                            words.next();
                        }
                        _ => break,
                    }
                    words.next();
                }
                let name = words.next().ok_or_else(|| failed(line, "missing pool name"))?.to_string();
                let words_of_add: Vec<String> =
                    words.map(|w| if KEYWORDS.contains(&w) { w.to_string() } else { self.canonical(w) }).collect();
                let mut devices: Vec<String> =
                    words_of_add.iter().filter(|w| !KEYWORDS.contains(&w.as_str())).cloned().collect();
                let existing_of_attach = devices.first().cloned().unwrap_or_default();
                let pool = self
                    .pools
                    .get(&name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                if verb == "attach" {
                    let existing = devices.first().cloned().unwrap_or_default();
                    if devices.len() != 2 || !pool.members.contains(&existing) {
                        return Err(failed(line, format!("cannot attach to {existing}: no such device in pool")));
                    }
                    devices.remove(0);
                }
                if let Some(missing) = devices.iter().find(|m| !self.exists(m)) {
                    return Err(failed(line, format!("cannot open '{missing}': no such device")));
                }
                if let Some(taken) = devices.iter().find(|d| self.pools.values().any(|p| p.members.contains(d))) {
                    return Err(failed(line, format!("{taken} is part of a pool")));
                }
                for device in &devices {
                    let uuid = self.uuid();
                    self.set_signature(device, "zfs_member", Some(name.clone()), uuid);
                }
                let pool = self.pools.get_mut(&name).expect("checked");
                if verb == "attach" {
                    attach(&mut pool.tree, &existing_of_attach, &devices[0]);
                } else {
                    add_vdevs(&mut pool.tree, &words_of_add);
                }
                pool.members.extend(devices);
                Ok(String::new())
            }
            Some("get") => {
                let name = args.last().copied().unwrap_or_default();
                let pool = self
                    .pools
                    .get(name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                Ok(format!("{}\n", pool.guid))
            }
            Some("status") => {
                let name = args.last().copied().unwrap_or_default();
                let no_pool = || failed(line, format!("cannot open '{name}': no such pool"));
                let pool = self.pools.get(name).filter(|p| p.imported).ok_or_else(no_pool)?;
                // The GUID is the pool's now (a pool made again elsewhere has a new one).
                Ok(PoolStatus { pool_guid: pool.guid.to_string(), ..pool.tree.clone() }.print())
            }
            Some("export") => {
                let name = args.last().copied().unwrap_or_default().to_string();
                let busy = self.mounts.iter().any(|m| m.source == name || m.source.starts_with(&format!("{name}/")));
                let pool = self
                    .pools
                    .get_mut(&name)
                    .filter(|p| p.imported)
                    .ok_or_else(|| failed(line, format!("cannot open '{name}': no such pool")))?;
                if busy {
                    return Err(failed(line, format!("cannot export '{name}': pool is busy")));
                }
                pool.imported = false;
                pool.exported_cleanly = true;
                pool.unlocked.clear();
                Ok(String::new())
            }
            _ => Err(failed(line, "not simulated")),
        }
    }

    pub(super) fn zfs(
        &mut self,
        line: &CommandLine,
        args: &[&str],
        input: Option<&Secret>,
    ) -> Result<String, CommandError> {
        let name = args.last().copied().unwrap_or_default().to_string();
        let pool_name = name.split('/').next().unwrap_or_default().to_string();
        let missing = || failed(line, format!("cannot open '{name}': dataset does not exist"));
        match args.first().copied() {
            Some("get") if args.contains(&"-r") => {
                let pool = self.pools.get(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let with_source = args.iter().any(|a| a.ends_with(",source"));
                // `all`, or the properties asked for by name.
                let asked = args.get(args.len().saturating_sub(2)).copied().unwrap_or("all");
                let property = |value: &str, kind: &str, data: &str| Property {
                    value: value.to_string(),
                    source: with_source.then(|| PropertySource { kind: kind.to_string(), data: data.to_string() }),
                };
                let datasets: BTreeMap<String, PropertiesOf> = pool
                    .datasets
                    .iter()
                    .map(|(ds, d)| {
                        // Its own properties over those it inherits, as ZFS shows every property, but for
                        // those of its encryption, shown below as ZFS shows them.
                        let mut properties = BTreeMap::new();
                        let mut lineage: Vec<&str> =
                            ds.match_indices('/').map(|(i, _)| &ds[..i]).chain([ds.as_str()]).collect();
                        lineage.retain(|name| pool.datasets.contains_key(*name));
                        for name in lineage {
                            let (kind, data) = if name == ds { ("LOCAL", "-") } else { ("INHERITED", name) };
                            for (key, value) in &pool.datasets[name].properties {
                                if !ENCRYPTION_PROPERTIES.contains(&key.as_str()) {
                                    properties.insert(key.clone(), property(shown(key, value), kind, data));
                                }
                            }
                        }
                        let mut fixed = |key: &str, value: &str| {
                            properties.insert(key.to_string(), property(value, "NONE", "-"));
                        };
                        match &d.encryption_root {
                            Some(root) => {
                                let status = if pool.unlocked.contains(root) { "available" } else { "unavailable" };
                                fixed("encryptionroot", root);
                                fixed("keystatus", status);
                                // Fixed when the encryption root was made: shown on it and under it alike.
                                let made = pool.datasets.get(root).map(|r| &r.properties);
                                let given = |key: &str| made.and_then(|m| m.get(key)).map(String::as_str);
                                let format = given("keyformat").unwrap_or("passphrase");
                                let iterations = if format == "passphrase" { "350000" } else { "0" };
                                fixed("encryption", given("encryption").unwrap_or("aes-256-gcm"));
                                fixed("keyformat", format);
                                fixed("pbkdf2iters", given("pbkdf2iters").unwrap_or(iterations));
                                let location = if root == ds {
                                    property(&d.keylocation, "LOCAL", "-")
                                } else {
                                    property("none", "DEFAULT", "-")
                                };
                                properties.insert("keylocation".to_string(), location);
                            }
                            None => {
                                fixed("encryptionroot", "-");
                                fixed("keystatus", "-");
                                properties.insert("encryption".to_string(), property("off", "DEFAULT", "-"));
                                properties.insert("keylocation".to_string(), property("none", "DEFAULT", "-"));
                            }
                        }
                        // Asked by name: those (what is not set, ZFS shows as "-" from nowhere).
                        if asked != "all" {
                            let names: Vec<&str> = asked.split(',').collect();
                            properties.retain(|key, _| names.contains(&key.as_str()));
                            for name in names {
                                properties.entry(name.to_string()).or_insert_with(|| property("-", "NONE", "-"));
                            }
                        }
                        let kind = if d.volume { "VOLUME" } else { "FILESYSTEM" }.to_string();
                        (ds.clone(), PropertiesOf { kind, properties })
                    })
                    .collect();
                Ok(DatasetListing { datasets }.print())
            }
            Some("get") => {
                let pool = self.pools.get(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let dataset = pool.datasets.get(&name).ok_or_else(missing)?;
                let kind = if dataset.volume { "volume" } else { "filesystem" };
                let entry = json!({ "type": kind.to_uppercase(), "properties": { "type": { "value": kind } } });
                Ok(json!({ "datasets": { name.clone(): entry } }).to_string())
            }
            Some("create") => {
                let mut properties = BTreeMap::new();
                let mut volume = false;
                let mut words = args[1..args.len() - 1].iter();
                while let Some(word) = words.next() {
                    match *word {
                        "-V" => {
                            volume = true;
                            words.next();
                        }
                        "-o" => {
                            if let Some((k, v)) = words.next().and_then(|kv| kv.split_once('=')) {
                                properties.insert(k.to_string(), v.to_string());
                            }
                        }
                        _ => {}
                    }
                }
                let parent =
                    name.rsplit_once('/').map(|(p, _)| p.to_string()).ok_or_else(|| failed(line, "no parent"))?;
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let inherited = pool
                    .datasets
                    .get(&parent)
                    .ok_or_else(|| failed(line, format!("cannot create '{name}': parent does not exist")))?;
                if pool.datasets.contains_key(&name) {
                    return Err(failed(line, format!("cannot create '{name}': dataset already exists")));
                }
                let encrypted = properties.get("encryption").is_some_and(|e| e != "off");
                let keylocation = properties.get("keylocation").cloned().unwrap_or_else(|| "prompt".into());
                let dataset = if encrypted {
                    if keylocation == "prompt" && input.is_none() {
                        return Err(failed(line, "no key given on standard input"));
                    }
                    pool.unlocked.insert(name.clone());
                    SimDataset { volume, encryption_root: Some(name.clone()), keylocation, properties }
                } else {
                    if inherited.encryption_root.as_ref().is_some_and(|root| !pool.unlocked.contains(root)) {
                        return Err(failed(line, format!("cannot create '{name}': encryption key not loaded")));
                    }
                    SimDataset {
                        volume,
                        encryption_root: inherited.encryption_root.clone(),
                        keylocation: inherited.keylocation.clone(),
                        properties,
                    }
                };
                pool.datasets.insert(name, dataset);
                Ok(String::new())
            }
            Some("set") => {
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let dataset = pool.datasets.get_mut(&name).ok_or_else(missing)?;
                for assignment in &args[1..args.len() - 1] {
                    let (key, value) = assignment.split_once('=').ok_or_else(|| failed(line, "bad property"))?;
                    dataset.properties.insert(key.to_string(), value.to_string());
                }
                Ok(String::new())
            }
            Some("load-key") => {
                let pool = self.pools.get_mut(&pool_name).filter(|p| p.imported).ok_or_else(missing)?;
                let key = input.map(|k| k.expose().to_vec()).unwrap_or_default();
                let file_key = pool.datasets.get(&name).is_some_and(|d| d.keylocation.starts_with("file://"));
                if !file_key && key != pool.key {
                    return Err(failed(line, "Key load error: Incorrect key provided"));
                }
                pool.unlocked.insert(name);
                Ok(String::new())
            }
            _ => Err(failed(line, "not simulated")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool of `vm-tests zfs-special-dedup` as ZFS showed it (`tools::zfs`'s fixture).
    const SPECIAL_DEDUP: &str = include_str!("../../../tests/fixtures/zpool-status-special-dedup.json");

    /// `vm-tests mirror-native`'s pool as ZFS listed it (`tools::zfs`'s fixture).
    const DATASETS: &str = include_str!("../../../tests/fixtures/zfs-get-all-rpool.json");

    /// The same pool made in the simulator with the commands the VM's run made it with (its plan's
    /// steps, and the weak key derivation of the test builds), listed with the adapter's command.
    fn simulated_listing() -> DatasetListing {
        use crate::system::System;
        let output = simulated_pool().run(&crate::tools::zfs::properties_command("rpool"), None).expect("zfs get");
        DatasetListing::parse(&output).expect("the adapter reads the simulator")
    }

    /// That pool in the simulator.
    fn simulated_pool() -> super::super::SimSystem {
        use crate::system::System;
        let system = super::super::SimSystem::with_disks(vec![
            super::super::SimSystem::disk("vda", "virtio-n0", 3 << 30, "n0"),
            super::super::SimSystem::disk("vdb", "virtio-n1", 3 << 30, "n1"),
        ]);
        let key = Secret::new(b"passphrase".to_vec());
        let create = "create -f -o ashift=12 -o autotrim=on -O acltype=posixacl -O compression=zstd \
            -O encryption=aes-256-gcm -O keyformat=passphrase -O keylocation=prompt -O mountpoint=none \
            -O relatime=on -O xattr=sa -O pbkdf2iters=100000 -R /mnt rpool mirror /dev/vda /dev/vdb";
        system.run(&CommandLine::new("zpool", create.split_whitespace()), Some(&key)).expect("zpool create");
        for (dataset, options) in [("root", ""), ("nix", "-o atime=off "), ("home", ""), ("var", "")] {
            let line = format!("create {options}-o mountpoint=legacy rpool/{dataset}");
            system.run(&CommandLine::new("zfs", line.split_whitespace()), None).expect("zfs create");
        }
        system
    }

    /// The probes' reader asks ZFS for the properties they compare by name; what it reads of those is
    /// what a listing of every property shows, and a property not set (a user property, one of another
    /// dataset type) is absent from both.
    #[test]
    fn asked_by_name_a_dataset_reads_as_in_the_listing_of_all() {
        use crate::tools::zfs::Zfs;
        let system = simulated_pool();
        let asked = ["atime", "compression", "mountpoint", "org.example:unset", "volsize"];
        let named = Zfs::asking(&system, asked.map(String::from));
        let all = Zfs::new(&system);
        let always = ["type", "guid", "encryptionroot", "keystatus", "keylocation"];
        for dataset in ["rpool", "rpool/root", "rpool/nix"] {
            let by_name = named.dataset(dataset).expect("read").expect("there");
            let in_all = all.dataset(dataset).expect("read").expect("there");
            assert_eq!(by_name.kind, in_all.kind, "{dataset}");
            for key in asked.iter().chain(&always) {
                assert_eq!(by_name.properties.get(*key), in_all.properties.get(*key), "{dataset} {key}");
            }
            assert!(by_name
                .properties
                .keys()
                .all(|key| asked.contains(&key.as_str()) || always.contains(&key.as_str())));
            assert!(
                !by_name.properties.contains_key("org.example:unset") && !by_name.properties.contains_key("volsize")
            );
        }
        assert_eq!(named.dataset("rpool/nix").expect("read").expect("there").properties["atime"], "off");
    }

    #[test]
    fn the_simulated_listing_is_zfss_for_the_same_pool() {
        let real = DatasetListing::parse(DATASETS).expect("the fixture reads");
        let simulated = simulated_listing();
        assert_eq!(simulated.datasets.keys().collect::<Vec<_>>(), real.datasets.keys().collect::<Vec<_>>());
        for (name, ours) in &simulated.datasets {
            let theirs = &real.datasets[name];
            assert_eq!(ours.kind, theirs.kind, "{name}");
            // Every property the simulator shows, ZFS shows with the same value and source.
            for (key, property) in &ours.properties {
                assert_eq!(Some(property), theirs.properties.get(key), "{name} {key}");
            }
            // And everything ZFS shows as set here or inherited (what adopt keeps), the simulator shows.
            for (key, property) in &theirs.properties {
                let kind = property.source.as_ref().map(|s| s.kind.as_str());
                if matches!(kind, Some("LOCAL" | "INHERITED")) {
                    assert!(ours.properties.contains_key(key), "{name} {key} is missing");
                }
            }
        }
    }

    #[test]
    fn the_simulated_tree_is_zfss_for_the_same_create() {
        let real = PoolStatus::parse("tank", SPECIAL_DEDUP).expect("the fixture reads");
        let part = |disk: u8, n: u8| format!("/dev/disk/by-id/virtio-c{disk}-part{n}");
        let mut words: Vec<String> = vec!["mirror".into(), part(0, 6), part(1, 6), "log".into(), part(0, 5)];
        words.extend(["special".into(), "mirror".into(), part(0, 3), part(1, 3)]);
        words.extend(["dedup".into(), "mirror".into(), part(0, 4), part(1, 4), "cache".into(), part(1, 5)]);
        let guid = real.pool_guid.parse().expect("a number");
        assert_eq!(vdev_tree("tank", guid, &words), real);
    }
}
