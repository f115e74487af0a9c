//! What of a rescue system's network the RAM OS keeps: `ip -json -details address` and `ip -json route`
//! output, read entry by entry, become one plan per physical interface (matched by its MAC address, as
//! names differ between the two kernels) and a systemd-networkd unit for each.
//!
//! Pure: the caller reads the files and applies the result.

use serde::Deserialize;
use serde_json::Value;

/// The network settings one interface keeps in the RAM OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name on the rescue system (for messages; the RAM OS may name it differently).
    pub name: String,
    /// Its permanent MAC address, lower case: what the unit matches.
    pub mac: String,
    /// Its IPv4 address came from DHCP: the RAM OS asks again instead of keeping a lease.
    pub dhcp4: bool,
    /// Static addresses, as CIDR.
    pub addresses: Vec<String>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// The bond or bridge whose addresses this port carries (the RAM OS does not recreate either).
    pub on_behalf_of: Option<String>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `default` or a CIDR.
    pub destination: String,
    /// The destination is IPv6.
    pub ipv6: bool,
    /// The next hop, if any (an IPv6 next hop for an IPv4 destination is kept).
    pub gateway: Option<String>,
    /// The gateway is reachable without a matching prefix (`onlink`).
    pub onlink: bool,
    /// The route has link scope (no gateway: the destination is on the wire).
    pub link_scope: bool,
    /// The route's metric, if set.
    pub metric: Option<u64>,
}

/// The plan for all interfaces, and what was left out, each with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// One entry per physical interface that has something to keep.
    pub interfaces: Vec<Interface>,
    /// Entries not carried over, and why (for the log: the user may need to reach the machine another way).
    pub left_out: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    permaddr: Option<String>,
    #[serde(default)]
    link_type: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    /// The interface this one is stacked on (VLAN, macvlan).
    #[serde(default)]
    link: Option<String>,
    /// The bond or bridge this one is a port of.
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddressInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddressInfo {
    family: String,
    local: String,
    prefixlen: u32,
    #[serde(default)]
    scope: String,
    /// The address has a lifetime: DHCP or autoconfiguration gave it.
    #[serde(default)]
    dynamic: bool,
}

#[derive(Debug, Deserialize)]
struct Via {
    host: String,
}

#[derive(Debug, Deserialize)]
struct RouteEntry {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    metric: Option<u64>,
    #[serde(default)]
    flags: Vec<String>,
}

/// Kinds of interface that are built on others; the RAM OS does not recreate them.
const STACKED_KINDS: &[&str] = &["vlan", "macvlan", "ipvlan", "vxlan", "bond", "bridge", "team", "wireguard", "tun"];

/// Parses a JSON array entry by entry: an entry that does not parse is reported, the others are kept.
fn entries<T: serde::de::DeserializeOwned>(what: &str, json: &[u8], left_out: &mut Vec<String>) -> Vec<T> {
    let list: Vec<Value> = match serde_json::from_slice(json) {
        Ok(list) => list,
        Err(error) => {
            left_out.push(format!("{what}: not a JSON list ({error})"));
            return Vec::new();
        }
    };
    let mut parsed = Vec::new();
    for (index, entry) in list.into_iter().enumerate() {
        let label = entry.get("ifname").or_else(|| entry.get("dst")).and_then(Value::as_str).map(str::to_owned);
        match serde_json::from_value::<T>(entry) {
            Ok(value) => parsed.push(value),
            Err(error) => left_out
                .push(format!("{what} entry {index}{}: {error}", label.map(|l| format!(" ({l})")).unwrap_or_default())),
        }
    }
    parsed
}

fn is_ipv6(address: &str) -> bool {
    address.contains(':')
}

impl Link {
    fn kind(&self) -> Option<&str> {
        self.linkinfo.as_ref().and_then(|i| i.info_kind.as_deref())
    }

    /// A VLAN, bond, bridge or tunnel: it shares or lacks a MAC of its own.
    fn stacked(&self) -> bool {
        self.link.is_some()
            || self.flags.iter().any(|f| f == "MASTER")
            || self.kind().is_some_and(|k| STACKED_KINDS.contains(&k))
    }

    /// A bond, bridge or team: its ports carry its traffic.
    fn aggregate(&self) -> bool {
        self.flags.iter().any(|f| f == "MASTER") || self.kind().is_some_and(|k| ["bond", "bridge", "team"].contains(&k))
    }

    fn mac(&self) -> Option<String> {
        self.permaddr.as_deref().or(self.address.as_deref()).map(str::to_ascii_lowercase)
    }

    fn global_addresses(&self) -> impl Iterator<Item = &AddressInfo> {
        self.addr_info.iter().filter(|a| a.scope == "global" && (a.family == "inet" || a.family == "inet6"))
    }
}

/// Plans what each interface keeps from `ip -json -details address show` and the route lists
/// (`ip -json -4 route show`, `ip -json -6 route show`; the file names are for messages).
pub fn plan(addresses: &[u8], routes: &[(&str, &[u8])]) -> Carried {
    let mut left_out = Vec::new();
    let links: Vec<Link> = entries("addresses", addresses, &mut left_out);
    let mut interfaces: Vec<Interface> = Vec::new();
    // The name on the rescue system whose routes go to which planned interface.
    let mut route_owner: Vec<(String, usize)> = Vec::new();
    for link in links.iter().filter(|l| l.link_type.as_deref().unwrap_or("ether") == "ether" && !l.stacked()) {
        let Some(mac) = link.mac() else { continue };
        if link.master.is_some() {
            // A bond's or bridge's port: its master's addresses come below.
            continue;
        }
        let mut interface = Interface {
            name: link.ifname.clone(),
            mac,
            dhcp4: false,
            addresses: Vec::new(),
            routes: Vec::new(),
            on_behalf_of: None,
        };
        take_addresses(link, &mut interface);
        if interface.dhcp4 || !interface.addresses.is_empty() {
            route_owner.push((link.ifname.clone(), interfaces.len()));
            interfaces.push(interface);
        }
    }
    for link in links.iter().filter(|l| l.stacked() && l.global_addresses().next().is_some()) {
        let kind = link.kind().unwrap_or("stacked interface");
        let first_port = links.iter().find(|p| p.master.as_deref() == Some(link.ifname.as_str()) && p.link.is_none());
        match (link.aggregate(), first_port.and_then(|p| p.mac().map(|m| (p, m)))) {
            (true, Some((port, mac))) if !interfaces.iter().any(|i| i.mac == mac) => {
                // A bond, bridge or team: its addresses go on its first port, which the RAM OS has as a plain NIC.
                let mut interface = Interface {
                    name: port.ifname.clone(),
                    mac,
                    dhcp4: false,
                    addresses: Vec::new(),
                    routes: Vec::new(),
                    on_behalf_of: Some(link.ifname.clone()),
                };
                take_addresses(link, &mut interface);
                route_owner.push((link.ifname.clone(), interfaces.len()));
                interfaces.push(interface);
                left_out.push(format!(
                    "{}: a {kind}; the RAM OS does not recreate it: its addresses go on its port {}",
                    link.ifname, port.ifname
                ));
            }
            _ => left_out.push(format!(
                "{}: a {kind}{}; the RAM OS does not recreate it, and its addresses are not carried over",
                link.ifname,
                link.link.as_deref().map(|p| format!(" on {p}")).unwrap_or_default()
            )),
        }
    }
    for (file, json) in routes {
        let ipv6_file = file.contains('6');
        for entry in entries::<RouteEntry>(file, json, &mut left_out) {
            route(entry, ipv6_file, &route_owner, &mut interfaces, &mut left_out);
        }
    }
    Carried { interfaces, left_out }
}

fn take_addresses(link: &Link, interface: &mut Interface) {
    for address in link.global_addresses() {
        if address.dynamic && address.family == "inet" {
            interface.dhcp4 = true;
        } else if address.dynamic {
            // IPv6 with a lifetime came from router advertisements (or DHCPv6, which they announce):
            // the RAM OS accepts them again.
        } else {
            interface.addresses.push(format!("{}/{}", address.local, address.prefixlen));
        }
    }
}

fn route(
    entry: RouteEntry,
    ipv6_file: bool,
    owners: &[(String, usize)],
    interfaces: &mut [Interface],
    left_out: &mut Vec<String>,
) {
    let kind = entry.kind.as_deref().unwrap_or("unicast");
    let protocol = entry.protocol.as_deref().unwrap_or("boot");
    let gateway = entry.gateway.clone().or_else(|| entry.via.as_ref().map(|v| v.host.clone()));
    let Some(dev) = entry.dev.as_deref() else {
        left_out.push(format!("route {}: no interface ({kind})", entry.dst));
        return;
    };
    // The kernel adds the routes of an address's own prefix (and fe80::/64) by itself.
    if protocol == "kernel" {
        return;
    }
    let Some(&(_, index)) = owners.iter().find(|(name, _)| name == dev) else {
        left_out.push(format!("route {} on {dev}: {dev} is not carried over", entry.dst));
        return;
    };
    let interface = &mut interfaces[index];
    // What DHCP or router advertisements gave, they give again.
    if protocol == "ra" || (protocol == "dhcp" && interface.dhcp4) {
        return;
    }
    if kind != "unicast" {
        left_out.push(format!("route {} on {dev}: a {kind} route", entry.dst));
        return;
    }
    let ipv6 = if entry.dst == "default" { ipv6_file } else { is_ipv6(&entry.dst) };
    interface.routes.push(Route {
        destination: entry.dst,
        ipv6,
        link_scope: gateway.is_none() && entry.scope.as_deref() == Some("link"),
        gateway,
        onlink: entry.flags.iter().any(|f| f == "onlink"),
        metric: entry.metric,
    });
}

impl Interface {
    /// The unit's file name: by MAC, so that it is the same whatever the RAM OS names the interface, and
    /// sorted before the RAM OS's catch-all DHCP unit.
    pub fn unit_name(&self) -> String {
        format!("10-nix-dabei-{}.network", self.mac.replace(':', ""))
    }

    /// The systemd-networkd unit. It is written whether or not the interface exists yet: networkd
    /// applies it when the interface appears (no race with udev).
    pub fn unit(&self) -> String {
        let mut unit = format!("[Match]\nMACAddress={}\n", self.mac);
        if let Some(master) = &self.on_behalf_of {
            unit.push_str(&format!("# carries {master}'s addresses\n"));
        }
        let dhcp = if self.dhcp4 { "ipv4" } else { "no" };
        unit.push_str(&format!("\n[Network]\nDHCP={dhcp}\nIPv6AcceptRA=yes\n"));
        for address in &self.addresses {
            unit.push_str(&format!("Address={address}\n"));
        }
        for route in &self.routes {
            unit.push_str("\n[Route]\n");
            if route.destination != "default" {
                unit.push_str(&format!("Destination={}\n", route.destination));
            }
            match &route.gateway {
                Some(gateway) => unit.push_str(&format!("Gateway={gateway}\n")),
                // A default route without gateway (point-to-point): the family must be said.
                None if route.destination == "default" => {
                    unit.push_str(&format!("Destination={}\n", if route.ipv6 { "::/0" } else { "0.0.0.0/0" }))
                }
                None => {}
            }
            if route.onlink {
                unit.push_str("GatewayOnLink=yes\n");
            }
            if route.link_scope {
                unit.push_str("Scope=link\n");
            }
            if let Some(metric) = route.metric {
                unit.push_str(&format!("Metric={metric}\n"));
            }
        }
        unit
    }

    /// `ip` commands that apply the same settings now, to the interface called `local_name` here (for
    /// systems where networkd is not running yet or at all).
    pub fn commands(&self, local_name: &str) -> Vec<Vec<String>> {
        let own = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<String>>();
        let mut commands = vec![own(&["link", "set", "dev", local_name, "up"])];
        for address in &self.addresses {
            commands.push(own(&["address", "replace", address, "dev", local_name]));
        }
        for route in &self.routes {
            let mut command = own(&[if route.ipv6 { "-6" } else { "-4" }, "route", "replace", &route.destination]);
            if let Some(gateway) = &route.gateway {
                command.push("via".into());
                if is_ipv6(gateway) != route.ipv6 {
                    command.push(if is_ipv6(gateway) { "inet6" } else { "inet" }.into());
                }
                command.push(gateway.clone());
            }
            command.extend(own(&["dev", local_name]));
            if route.onlink {
                command.push("onlink".into());
            }
            if route.link_scope {
                command.extend(own(&["scope", "link"]));
            }
            if let Some(metric) = route.metric {
                command.extend(["metric".to_owned(), metric.to_string()]);
            }
            commands.push(command);
        }
        commands
    }
}

/// The name servers of a resolv.conf, in order.
pub fn nameservers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|s| !s.is_empty() && !s.starts_with("127.") && s != "::1")
        .collect()
}

/// A systemd-resolved drop-in that gives it the carried name servers (the RAM OS's /etc/resolv.conf is
/// resolved's stub, so writing servers there would be lost or ignored).
pub fn resolved_dropin(servers: &[String]) -> String {
    format!("[Resolve]\nDNS={}\n", servers.join(" "))
}

/// A machine id (32 lowercase hex digits), if `text` holds one.
pub fn machine_id(text: &str) -> Option<String> {
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) && id != "0".repeat(32))
        .then(|| id.to_owned())
}
