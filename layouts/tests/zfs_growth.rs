//! What an existing pool that holds part of a plan's pool needs to become it in place.

use std::collections::BTreeMap;

use layouts::nodes::zfs::{VdevDevices, VdevMode, ZpoolCreate};

fn vdev(mode: VdevMode, devices: &[&str]) -> VdevDevices {
    VdevDevices { mode, devices: devices.iter().map(|d| d.to_string()).collect() }
}

fn pool(vdevs: Vec<VdevDevices>) -> ZpoolCreate {
    ZpoolCreate {
        pool: "tank".into(),
        altroot: "/mnt".into(),
        vdevs,
        log: vec![],
        special: vec![],
        dedup: vec![],
        cache: vec![],
        spare: vec![],
        options: BTreeMap::from([("ashift".to_string(), "12".to_string())]),
        root_fs_options: BTreeMap::new(),
        guid: None,
    }
}

/// The pool holds these devices (named as `zpool status` names them: by-id paths here).
fn holding(devices: &'static [&'static str]) -> impl Fn(&str) -> Option<String> {
    move |device: &str| devices.contains(&device).then(|| format!("/dev/disk/by-id/{device}"))
}

fn lines(op: &ZpoolCreate, held: &'static [&'static str]) -> Result<Vec<String>, String> {
    op.growth(&holding(held)).map(|commands| commands.iter().map(ToString::to_string).collect())
}

#[test]
fn a_pool_that_holds_everything_needs_nothing() {
    let op = pool(vec![vdev(VdevMode::Mirror, &["a", "b"])]);
    assert_eq!(lines(&op, &["a", "b"]), Ok(vec![]));
}

#[test]
fn missing_mirror_members_are_attached_to_a_member_that_is_there() {
    let op = pool(vec![vdev(VdevMode::Mirror, &["a", "b", "c"]), vdev(VdevMode::Mirror, &["d", "e"])]);
    assert_eq!(
        lines(&op, &["b", "d", "e"]),
        Ok(vec![
            "zpool attach -f -o ashift=12 tank /dev/disk/by-id/b a".to_string(),
            "zpool attach -f -o ashift=12 tank /dev/disk/by-id/b c".to_string(),
        ])
    );
}

#[test]
fn a_missing_log_vdev_cache_and_spares_are_added() {
    let mut op = pool(vec![vdev(VdevMode::Stripe, &["a"])]);
    op.log = vec![vdev(VdevMode::Mirror, &["l1", "l2"])];
    op.cache = vec!["c1".into(), "c2".into()];
    op.spare = vec!["s1".into()];
    assert_eq!(
        lines(&op, &["a", "c1"]),
        Ok(vec![
            "zpool add -f -o ashift=12 tank log mirror l1 l2".to_string(),
            "zpool add -f -o ashift=12 tank cache c2".to_string(),
            "zpool add -f -o ashift=12 tank spare s1".to_string(),
        ])
    );
}

#[test]
fn what_cannot_be_had_in_place_is_named() {
    let raidz = pool(vec![vdev(VdevMode::Raidz1, &["a", "b", "c"])]);
    let error = lines(&raidz, &["a", "b"]).expect_err("raidz");
    assert!(error.contains("c would join a raidz1 vdev") && error.contains("only mirrors"), "{error}");
    let stripe = pool(vec![vdev(VdevMode::Stripe, &["a"]), vdev(VdevMode::Stripe, &["b"])]);
    let error = lines(&stripe, &["a"]).expect_err("a new data vdev");
    assert!(error.contains("without the data vdev of b"), "{error}");
}

fn dataset(properties: &[(&str, &str)]) -> layouts::nodes::zfs::ZfsCreate {
    layouts::nodes::zfs::ZfsCreate {
        dataset: "tank/home".into(),
        volume_size: None,
        properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        guid: None,
    }
}

fn shown(properties: &[(&str, &str)]) -> BTreeMap<String, String> {
    properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_dataset_with_the_planned_properties_as_zfs_shows_them_needs_nothing() {
    let planned = dataset(&[
        ("acltype", "posixacl"),
        ("recordsize", "1M"),
        ("quota", "none"),
        ("mountpoint", "/srv"),
        ("encryption", "on"),
        ("keylocation", "prompt"),
        ("com.sun:auto-snapshot", "false"),
    ]);
    let found = shown(&[
        ("acltype", "posix"),
        ("recordsize", "1048576"),
        ("quota", "0"),
        ("mountpoint", "/mnt/srv"),
        ("encryption", "aes-256-gcm"),
        ("keylocation", "file:///run/key"),
        ("com.sun:auto-snapshot", "false"),
    ]);
    assert_eq!(planned.property_changes(&found, Some("/mnt")), Ok(vec![]));
}

#[test]
fn changed_properties_are_set_and_fixed_ones_refused() {
    let planned = dataset(&[("atime", "off"), ("compression", "zstd"), ("mountpoint", "legacy"), ("xattr", "sa")]);
    let found = shown(&[("atime", "on"), ("compression", "zstd"), ("mountpoint", "legacy")]);
    let changes = planned.property_changes(&found, Some("/mnt")).expect("settable");
    assert_eq!(changes, [("atime".to_string(), "off".to_string())], "xattr is not shown, so not compared");
    assert_eq!(planned.set_command(&changes).to_string(), "zfs set atime=off tank/home");
    let fixed = dataset(&[("casesensitivity", "insensitive")]);
    let error = fixed.property_changes(&shown(&[("casesensitivity", "sensitive")]), None).expect_err("fixed");
    assert!(error.contains("tank/home") && error.contains("casesensitivity") && error.contains("not done in place"));
    let unencrypted = dataset(&[("encryption", "on")]);
    assert!(unencrypted.property_changes(&shown(&[("encryption", "off")]), None).is_err());
}
