//! Carrying network settings over: real `ip -json` output (iproute2 6.1, captured in the test VM with
//! dummy interfaces standing in for NICs) becomes systemd-networkd units matched by MAC address.

use std::os::unix::fs::symlink;
use std::path::Path;

use handover::network::{machine_id, nameservers, plan, Carried, Interface};
use handover::restore;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ip").join(name)).expect("fixture")
}

fn machine(machine: &str) -> Carried {
    let routes = fixture(&format!("{machine}-routes.json"));
    let routes6 = fixture(&format!("{machine}-routes6.json"));
    plan(&fixture(&format!("{machine}-addresses.json")), &[("routes.json", &routes), ("routes6.json", &routes6)])
}

fn interface<'a>(carried: &'a Carried, mac: &str) -> &'a Interface {
    carried.interfaces.iter().find(|i| i.mac == mac).unwrap_or_else(|| panic!("no unit for {mac}: {carried:#?}"))
}

#[test]
fn two_nics_with_a_vlan_keep_their_own_units() {
    let carried = machine("multi");
    // eth0 and eth1 have addresses; lo, an unused dummy0 and an empty bond0 have none.
    assert_eq!(carried.interfaces.len(), 2, "{carried:#?}");
    let eth0 = interface(&carried, "52:54:00:12:34:56");
    assert_eq!(eth0.addresses, ["203.0.113.10/26", "2001:db8:10::2/64"]);
    assert!(!eth0.dhcp4);
    let unit = eth0.unit();
    assert!(unit.starts_with("[Match]\nMACAddress=52:54:00:12:34:56\n"), "{unit}");
    assert!(unit.contains("[Route]\nGateway=203.0.113.1\n"), "the IPv4 default route: {unit}");
    assert!(unit.contains("[Route]\nGateway=fe80::1\nMetric=1024\n"), "the IPv6 default route: {unit}");
    // IPv4 over an IPv6 next hop.
    assert!(unit.contains("[Route]\nDestination=192.168.77.0/24\nGateway=fe80::2\n"), "{unit}");
    // The VLAN on eth0 shares its MAC: it must not put its address into eth0's unit.
    assert!(!unit.contains("192.0.2.40") && !unit.contains("10.20.0.0"), "{unit}");
    assert!(
        carried.left_out.iter().any(|l| l.starts_with("eth0.10: a vlan on eth0")),
        "the VLAN is reported: {:?}",
        carried.left_out
    );
    assert!(carried.left_out.iter().any(|l| l.contains("route 10.20.0.0/16 on eth0.10")), "{:?}", carried.left_out);
    // The kernel's own prefix routes are not carried (the kernel adds them again).
    assert!(!unit.contains("203.0.113.0/26") && !unit.contains("fe80::/64"), "{unit}");
    let commands = eth0.commands("ens3");
    assert!(commands.contains(&words("-4 route replace 192.168.77.0/24 via inet6 fe80::2 dev ens3")), "{commands:?}");
    assert!(commands.contains(&words("address replace 2001:db8:10::2/64 dev ens3")), "{commands:?}");
}

fn words(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

#[test]
fn dhcp_stays_dynamic_and_onlink_gateways_stay_onlink() {
    let carried = machine("multi");
    let eth1 = interface(&carried, "52:54:00:ab:cd:ef");
    assert!(eth1.dhcp4, "its IPv4 address has a lifetime: DHCP gave it");
    assert!(eth1.addresses.is_empty(), "neither the lease nor the SLAAC address is pinned: {eth1:?}");
    let unit = eth1.unit();
    assert!(unit.contains("DHCP=ipv4\nIPv6AcceptRA=yes\n"), "{unit}");
    assert!(unit.contains("[Route]\nDestination=100.64.0.0/10\nGateway=192.0.2.254\nGatewayOnLink=yes\n"), "{unit}");
    assert!(!unit.contains("172.16.5.0"), "the DHCP server's route comes back with the lease: {unit}");
    assert!(eth1.commands("eth1").contains(&words("-4 route replace 100.64.0.0/10 via 192.0.2.254 dev eth1 onlink")));

    let dhcp = machine("dhcp");
    let ens3 = interface(&dhcp, "52:54:00:aa:bb:cc");
    assert!(ens3.dhcp4 && ens3.addresses.is_empty() && ens3.routes.is_empty(), "{ens3:?}");
}

#[test]
fn an_ipv6_only_machine_keeps_its_address_and_link_local_gateway() {
    let carried = machine("ipv6only");
    assert_eq!(carried.interfaces.len(), 1, "{carried:#?}");
    let nic = interface(&carried, "96:00:01:23:45:67");
    assert_eq!(nic.addresses, ["2a01:4f8:c012:abcd::1/64"]);
    assert_eq!(nic.routes.len(), 1);
    assert!(nic.routes[0].ipv6 && nic.routes[0].gateway.as_deref() == Some("fe80::1"));
    assert!(nic.commands("eth0").contains(&words("-6 route replace default via fe80::1 dev eth0 metric 1024")));
    assert!(carried.left_out.is_empty(), "{:?}", carried.left_out);
}

#[test]
fn a_bonds_addresses_go_on_its_port() {
    let carried = machine("bond");
    let port = interface(&carried, "52:54:00:00:00:02");
    assert_eq!(port.on_behalf_of.as_deref(), Some("bond0"));
    assert_eq!(port.addresses, ["2a01:4f8:1:2::2/64"]);
    assert!(port.unit().contains("# carries bond0's addresses"), "{}", port.unit());
    // eth0 keeps its own unit, unchanged by the bond.
    assert_eq!(interface(&carried, "52:54:00:12:34:56").addresses, ["203.0.113.10/26", "2001:db8:10::2/64"]);
    let macs: Vec<&str> = carried.interfaces.iter().map(|i| i.mac.as_str()).collect();
    let mut unique = macs.clone();
    unique.dedup();
    assert_eq!(macs.len(), unique.len(), "one unit per MAC: {macs:?}");
}

#[test]
fn a_bridges_addresses_go_on_its_port_too() {
    let mut links: Vec<serde_json::Value> = serde_json::from_slice(&fixture("bond-addresses.json")).expect("json");
    // The same machine with bond0 as a bridge (bridges carry no MASTER flag).
    let bridge = links.iter_mut().find(|l| l["ifname"] == "bond0").expect("bond0");
    bridge["linkinfo"]["info_kind"] = "bridge".into();
    bridge["flags"] = serde_json::json!(["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]);
    let addresses = serde_json::to_vec(&links).expect("json");
    let carried = plan(&addresses, &[]);
    let port = interface(&carried, "52:54:00:00:00:02");
    assert_eq!(
        (port.on_behalf_of.as_deref(), port.addresses.as_slice()),
        (Some("bond0"), &["2a01:4f8:1:2::2/64".to_string()][..])
    );
}

#[test]
fn a_route_without_gateway_stays_on_the_link() {
    let mut routes: Vec<serde_json::Value> = serde_json::from_slice(&fixture("multi-routes.json")).expect("json");
    // The VLAN's gateway-less route, as if it were on eth0 itself.
    let route = routes.iter_mut().find(|r| r["dst"] == "10.20.0.0/16").expect("route");
    route["dev"] = "eth0".into();
    let routes = serde_json::to_vec(&routes).expect("json");
    let carried = plan(&fixture("multi-addresses.json"), &[("routes.json", &routes)]);
    let eth0 = interface(&carried, "52:54:00:12:34:56");
    assert!(eth0.unit().contains("[Route]\nDestination=10.20.0.0/16\nScope=link\n"), "{}", eth0.unit());
    assert!(eth0.commands("eth0").contains(&words("-4 route replace 10.20.0.0/16 dev eth0 scope link")));
}

#[test]
fn one_odd_entry_does_not_drop_the_others() {
    let mut links: Vec<serde_json::Value> = serde_json::from_slice(&fixture("multi-addresses.json")).expect("json");
    let eth0 = links.iter_mut().find(|l| l["ifname"] == "eth0").expect("eth0");
    eth0["addr_info"] = serde_json::json!("garbage");
    let mut routes: Vec<serde_json::Value> = serde_json::from_slice(&fixture("multi-routes.json")).expect("json");
    routes.push(serde_json::json!({"dst": 7}));
    let addresses = serde_json::to_vec(&links).expect("json");
    let routes = serde_json::to_vec(&routes).expect("json");
    let carried = plan(&addresses, &[("routes.json", &routes)]);
    assert!(carried.interfaces.iter().any(|i| i.mac == "52:54:00:ab:cd:ef"), "eth1 is still carried");
    assert!(carried.left_out.iter().any(|l| l.starts_with("addresses entry 3 (eth0)")), "{:?}", carried.left_out);
    assert!(carried.left_out.iter().any(|l| l.starts_with("routes.json entry 8")), "{:?}", carried.left_out);
    let nothing = plan(b"<html>", &[]);
    assert!(nothing.interfaces.is_empty() && nothing.left_out[0].starts_with("addresses: not a JSON list"));
}

#[test]
fn name_servers_and_machine_id() {
    let resolv = "# generated\nnameserver 185.12.64.1\nnameserver 2a01:4ff:ff00::add:1 # v6\nnameserver 127.0.0.53\n";
    assert_eq!(nameservers(resolv), ["185.12.64.1", "2a01:4ff:ff00::add:1"], "the local stub is useless elsewhere");
    assert_eq!(machine_id("0123456789abcdef0123456789abcdef\n").as_deref(), Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(machine_id("uninitialized\n"), None);
    assert_eq!(machine_id(&"0".repeat(32)), None);
}

#[test]
fn restoring_writes_a_unit_for_every_carried_interface_and_dns_for_resolved() {
    let base = std::env::temp_dir().join(format!("nix-dabei-network-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let handover = base.join("handover");
    let root = base.join("root");
    std::fs::create_dir_all(&handover).expect("dir");
    for (name, from) in [
        ("addresses.json", "multi-addresses.json"),
        ("routes.json", "multi-routes.json"),
        ("routes6.json", "multi-routes6.json"),
    ] {
        std::fs::write(handover.join(name), fixture(from)).expect("write");
    }
    std::fs::write(handover.join("resolv.conf"), "nameserver 192.0.2.53\nnameserver 2001:db8::53\n").expect("write");
    std::fs::write(handover.join("machine-id"), "0123456789abcdef0123456789abcdef\n").expect("write");
    std::fs::write(handover.join("authorized_keys"), "ssh-ed25519 AAAAcarried a@b\n").expect("write");
    // As on NixOS: resolv.conf is resolved's stub, authorized_keys.d/root a link into the (read-only) store.
    std::fs::create_dir_all(root.join("etc/ssh/authorized_keys.d")).expect("dir");
    symlink("/run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).expect("link");
    std::fs::write(base.join("store-keys"), "ssh-ed25519 AAAAconfigured c@d\n").expect("write");
    symlink(base.join("store-keys"), root.join("etc/ssh/authorized_keys.d/root")).expect("link");

    let restored = restore(&handover, &root).expect("restore");
    // None of these MACs exist on this host: the units are written anyway, for networkd to apply later.
    for mac in ["525400123456", "525400abcdef"] {
        let unit = std::fs::read_to_string(root.join(format!("run/systemd/network/10-nix-dabei-{mac}.network")));
        assert!(unit.is_ok(), "no unit for {mac}: {restored:#?}");
    }
    assert_eq!(std::fs::read_dir(root.join("run/systemd/network")).expect("units").count(), 2);
    assert!(restored.warnings.iter().any(|w| w.contains("not here yet")), "{:?}", restored.warnings);
    assert!(restored.warnings.iter().any(|w| w.starts_with("eth0.10: a vlan")), "{:?}", restored.warnings);
    let dropin = std::fs::read_to_string(root.join("run/systemd/resolved.conf.d/10-nix-dabei.conf")).expect("dns");
    assert_eq!(dropin, "[Resolve]\nDNS=192.0.2.53 2001:db8::53\n");
    assert!(std::fs::symlink_metadata(root.join("etc/resolv.conf")).expect("resolv").file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(root.join("etc/machine-id")).expect("id"), "0123456789abcdef0123456789abcdef\n");
    let keys = std::fs::read_to_string(root.join("etc/ssh/authorized_keys.d/root")).expect("keys");
    assert_eq!(keys, "ssh-ed25519 AAAAconfigured c@d\nssh-ed25519 AAAAcarried a@b\n", "merged, not written through");
    assert_eq!(std::fs::read_to_string(base.join("store-keys")).expect("store"), "ssh-ed25519 AAAAconfigured c@d\n");
    let _ = std::fs::remove_dir_all(&base);
}
