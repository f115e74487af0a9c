//! Hetzner Cloud: the typed requests and answers of the endpoints nix-dabei uses (as the API's OpenAPI
//! description names them), and [`provision`]: find or make the server a `nix-dabei hetzner cloud
//! create` run installs, so that a second run continues with the same server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{query_value, Body, Client};
use crate::key::PublicKey;
use crate::HetznerError;

/// Hetzner Cloud's API.
pub const ENDPOINT: &str = "https://api.hetzner.cloud/v1";

/// The label every server and key nix-dabei makes carries, and its value.
pub const MADE_BY: (&str, &str) = ("made-by", "nix-dabei");
/// The label holding the fingerprint (without colons) of the key a server was made with.
pub const KEY_LABEL: &str = "nix-dabei-key";

/// An SSH key of the project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SshKey {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// MD5 fingerprint, colon-separated.
    pub fingerprint: String,
    /// The key.
    pub public_key: String,
}

#[derive(Deserialize)]
struct SshKeys {
    ssh_keys: Vec<SshKey>,
}

#[derive(Deserialize)]
struct OneSshKey {
    ssh_key: SshKey,
}

/// `POST /ssh_keys`.
#[derive(Debug, Serialize)]
struct CreateSshKey<'a> {
    name: String,
    public_key: &'a str,
    labels: BTreeMap<String, String>,
}

/// An address of a server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Address {
    /// The IPv4 address, or the IPv6 network (`2a01:4f8::/64`).
    pub ip: String,
}

/// A server's public network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct PublicNet {
    /// IPv4, unless the server was made without.
    #[serde(default)]
    pub ipv4: Option<Address>,
    /// The IPv6 network.
    #[serde(default)]
    pub ipv6: Option<Address>,
}

/// A server, as far as nix-dabei reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Server {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `initializing`, `starting`, `running`, `off`, ...
    pub status: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its addresses.
    pub public_net: PublicNet,
    /// Whether the next boot is into the rescue system.
    #[serde(default)]
    pub rescue_enabled: bool,
}

impl Server {
    /// Whether nix-dabei made it (its `made-by` label).
    pub fn made_by_nix_dabei(&self) -> bool {
        self.labels.get(MADE_BY.0).map(String::as_str) == Some(MADE_BY.1)
    }

    /// Where SSH reaches it: its IPv4 address, else the first address of its IPv6 network.
    pub fn ssh_address(&self) -> Option<String> {
        if let Some(v4) = &self.public_net.ipv4 {
            return Some(v4.ip.clone());
        }
        Some(crate::first_address(&self.public_net.ipv6.as_ref()?.ip))
    }
}

#[derive(Deserialize)]
struct Servers {
    servers: Vec<Server>,
}

#[derive(Deserialize)]
struct OneServer {
    server: Server,
}

/// `POST /servers`.
#[derive(Debug, Serialize)]
struct CreateServer<'a> {
    name: &'a str,
    server_type: &'a str,
    location: &'a str,
    image: &'a str,
    /// Names (the description's schema takes strings here: IDs or names, and a name is unambiguous).
    ssh_keys: Vec<String>,
    labels: BTreeMap<String, String>,
    start_after_create: bool,
}

#[derive(Deserialize)]
struct CreatedServer {
    server: Server,
    action: Action,
    #[serde(default)]
    next_actions: Vec<Action>,
}

/// An action the API runs on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Action {
    /// Its id.
    pub id: u64,
    /// What it does (`create_server`, `start_server`, `enable_rescue`, `reset_server`).
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<ActionError>,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ActionError {
    /// The code.
    pub code: String,
    /// The message.
    pub message: String,
}

#[derive(Deserialize)]
struct OneAction {
    action: Action,
}

/// `POST /servers/{id}/actions/enable_rescue`.
#[derive(Debug, Serialize)]
struct EnableRescue {
    #[serde(rename = "type")]
    kind: &'static str,
    ssh_keys: Vec<u64>,
}

/// A price in one location.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Price {
    /// The location's name.
    pub location: String,
    /// Per month, at most.
    pub price_monthly: Amount,
}

/// An amount, as the API writes it (a decimal string).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Amount {
    /// Without VAT.
    pub net: String,
    /// With VAT.
    pub gross: String,
}

/// A location a server type is offered in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Named {
    /// Its name.
    pub name: String,
}

/// A server type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerType {
    /// Its name (`cx22`).
    pub name: String,
    /// Cores.
    pub cores: u32,
    /// Memory in GB.
    pub memory: f64,
    /// Disk in GB.
    pub disk: f64,
    /// `x86` or `arm`.
    pub architecture: String,
    /// The locations it is offered in.
    pub locations: Vec<Named>,
    /// Its prices, per location.
    pub prices: Vec<Price>,
}

#[derive(Deserialize)]
struct ServerTypes {
    server_types: Vec<ServerType>,
}

#[derive(Deserialize)]
struct Locations {
    locations: Vec<Named>,
}

#[derive(Deserialize)]
struct Pricing {
    pricing: Currency,
}

#[derive(Deserialize)]
struct Currency {
    currency: String,
}

/// What a run is asked to make.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The server's name (a host name).
    pub name: String,
    /// Its type (`cx22`).
    pub server_type: String,
    /// Its location (`fsn1`).
    pub location: String,
    /// The image it boots first: any will do to kexec the RAM OS from.
    pub image: String,
    /// The key root logs in with.
    pub key: PublicKey,
    /// Boot the rescue system before installing (the RAM OS is kexec'd from it); only when the run makes
    /// the server.
    pub rescue: bool,
    /// Show what would be made, make nothing.
    pub dry_run: bool,
    /// How often to look at a running action.
    pub poll: Duration,
    /// How long an action may run.
    pub action_limit: Duration,
}

/// What a run would make, with its cost: shown before anything is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The server's name.
    pub name: String,
    /// The type, with cores, memory and disk.
    pub server_type: ServerType,
    /// The location.
    pub location: String,
    /// The image.
    pub image: String,
    /// Per month, with VAT, in `currency`.
    pub monthly_gross: String,
    /// Per month, without VAT.
    pub monthly_net: String,
    /// `EUR`.
    pub currency: String,
    /// Whether the key is uploaded (else it is the project's already).
    pub uploads_key: bool,
}

/// What [`provision`] reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudEvent {
    /// The project already holds the key.
    KeyFound {
        /// Its id and name.
        id: u64,
        /// Its name.
        name: String,
    },
    /// The key was uploaded.
    KeyUploaded {
        /// Its id.
        id: u64,
    },
    /// A server of that name made by nix-dabei is there: the run continues with it.
    ServerFound {
        /// Its id.
        id: u64,
        /// Its status.
        status: String,
    },
    /// What will be made (in a dry run: what would be).
    Offer(Box<Offer>),
    /// The server is made; its actions run.
    ServerCreated {
        /// Its id.
        id: u64,
    },
    /// An action finished.
    ActionDone {
        /// Its command.
        command: String,
        /// Seconds it took from when nix-dabei started waiting.
        seconds: f64,
    },
    /// The server is up at this address.
    Ready {
        /// Its id.
        id: u64,
        /// The address SSH reaches.
        address: String,
    },
}

/// The server a run installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The server.
    pub id: u64,
    /// The address SSH reaches.
    pub address: String,
    /// Whether this run made it.
    pub created: bool,
}

/// The Cloud API with a token.
#[derive(Debug)]
pub struct Cloud {
    client: Client,
}

impl Cloud {
    /// The API behind `client`.
    pub fn new(client: Client) -> Cloud {
        Cloud { client }
    }

    /// The HTTP client (to read what was sent).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, HetznerError> {
        let value = self.client.send("GET", path, None)?;
        shaped(&format!("GET {path}"), value)
    }

    fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, HetznerError> {
        let body = serde_json::to_value(body).map_err(|e| HetznerError::Input(e.to_string()))?;
        let value = self.client.send("POST", path, Some(Body::Json(body)))?;
        shaped(&format!("POST {path}"), value)
    }

    /// A `POST` without a body (the server actions that take none).
    fn post_empty<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, HetznerError> {
        let value = self.client.send("POST", path, None)?;
        shaped(&format!("POST {path}"), value)
    }

    /// The project's key with this fingerprint.
    pub fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKey>, HetznerError> {
        let keys: SshKeys = self.get(&format!("/ssh_keys?fingerprint={}", query_value(fingerprint)))?;
        Ok(keys.ssh_keys.into_iter().find(|k| k.fingerprint == fingerprint))
    }

    /// The server of this name, if there is one.
    pub fn server_by_name(&self, name: &str) -> Result<Option<Server>, HetznerError> {
        let servers: Servers = self.get(&format!("/servers?name={}", query_value(name)))?;
        Ok(servers.servers.into_iter().find(|s| s.name == name))
    }

    /// A server by id.
    pub fn server(&self, id: u64) -> Result<Server, HetznerError> {
        Ok(self.get::<OneServer>(&format!("/servers/{id}"))?.server)
    }

    /// Waits until the action has finished; its error, if it failed.
    fn wait(&self, action: &Action, request: &CreateRequest, events: &dyn Fn(CloudEvent)) -> Result<(), HetznerError> {
        let started = std::time::Instant::now();
        let mut current = action.clone();
        while current.status == "running" {
            if started.elapsed() > request.action_limit {
                return Err(HetznerError::Timeout(format!(
                    "the API's {} action {} still runs after {} s",
                    current.command,
                    current.id,
                    request.action_limit.as_secs()
                )));
            }
            std::thread::sleep(request.poll);
            current = self.get::<OneAction>(&format!("/actions/{}", current.id))?.action;
        }
        if current.status != "success" {
            let (code, message) = current.error.map(|e| (e.code, e.message)).unwrap_or_default();
            return Err(HetznerError::Action { command: current.command, code, message });
        }
        events(CloudEvent::ActionDone { command: current.command, seconds: started.elapsed().as_secs_f64() });
        Ok(())
    }

    /// What making the server costs, after checking its type and location exist and go together.
    fn offer(&self, request: &CreateRequest, uploads_key: bool) -> Result<Offer, HetznerError> {
        let types: ServerTypes = self.get(&format!("/server_types?name={}", query_value(&request.server_type)))?;
        let Some(server_type) = types.server_types.into_iter().find(|t| t.name == request.server_type) else {
            return Err(HetznerError::Input(format!("there is no server type {}", request.server_type)));
        };
        let locations: Locations = self.get(&format!("/locations?name={}", query_value(&request.location)))?;
        if !locations.locations.iter().any(|l| l.name == request.location) {
            return Err(HetznerError::Input(format!("there is no location {}", request.location)));
        }
        let offered: Vec<&str> = server_type.locations.iter().map(|l| l.name.as_str()).collect();
        let price = server_type.prices.iter().find(|p| p.location == request.location);
        let (Some(price), true) = (price, offered.contains(&request.location.as_str())) else {
            return Err(HetznerError::Input(format!(
                "server type {} is not offered in {} (it is in {})",
                request.server_type,
                request.location,
                offered.join(", ")
            )));
        };
        let pricing: Pricing = self.get("/pricing")?;
        Ok(Offer {
            name: request.name.clone(),
            monthly_gross: price.price_monthly.gross.clone(),
            monthly_net: price.price_monthly.net.clone(),
            server_type: server_type.clone(),
            location: request.location.clone(),
            image: request.image.clone(),
            currency: pricing.pricing.currency,
            uploads_key,
        })
    }
}

fn shaped<T: serde::de::DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T, HetznerError> {
    serde_json::from_value(value).map_err(|e| HetznerError::Shape { what: what.to_string(), problem: e.to_string() })
}

/// A host name as the API takes it (RFC 1123: letters, digits, dashes and dots; 63 per label).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Finds the server named in `request` or makes it, and waits until it runs (in rescue, where asked).
///
/// A server of the name that nix-dabei did not make is refused, never reused; one it made with another
/// key is refused too (its root would not let this key in). Before anything is made, `confirm` sees the
/// [`Offer`]; in a dry run it is only reported and `None` returned. A server made but not brought up is
/// reported with its id ([`HetznerError::HalfMade`]) so that it can be deleted or the run repeated.
pub fn provision(
    cloud: &Cloud,
    request: &CreateRequest,
    confirm: &dyn Fn(&Offer) -> bool,
    events: &dyn Fn(CloudEvent),
) -> Result<Option<Provisioned>, HetznerError> {
    if !valid_name(&request.name) {
        return Err(HetznerError::Input(format!(
            "{:?} is not a host name (letters, digits, dashes, dots; the API's rule)",
            request.name
        )));
    }
    let fingerprint_label = request.key.fingerprint_label();
    if let Some(server) = cloud.server_by_name(&request.name)? {
        if !server.made_by_nix_dabei() {
            return Err(HetznerError::NotOurs { name: server.name, id: server.id });
        }
        if server.labels.get(KEY_LABEL) != Some(&fingerprint_label) {
            return Err(HetznerError::Input(format!(
                "server {} ({}) was made with another SSH key (fingerprint {}), not {}: give that key",
                server.name,
                server.id,
                server.labels.get(KEY_LABEL).map_or("unknown", String::as_str),
                request.key.fingerprint
            )));
        }
        events(CloudEvent::ServerFound { id: server.id, status: server.status.clone() });
        if request.dry_run {
            return Ok(None);
        }
        return bring_up(cloud, server, request, None, events).map(Some);
    }

    let key = cloud.key_by_fingerprint(&request.key.fingerprint)?;
    if let Some(key) = &key {
        events(CloudEvent::KeyFound { id: key.id, name: key.name.clone() });
    }
    let offer = cloud.offer(request, key.is_none())?;
    events(CloudEvent::Offer(Box::new(offer.clone())));
    if request.dry_run {
        return Ok(None);
    }
    if !confirm(&offer) {
        return Err(HetznerError::Declined);
    }
    let (key_id, key_name) = match key {
        Some(key) => (key.id, key.name),
        None => {
            let name = format!("nix-dabei-{}", &fingerprint_label[..12]);
            let body = CreateSshKey { name, public_key: &request.key.line, labels: labels(None) };
            let uploaded: OneSshKey = cloud.post("/ssh_keys", &body)?;
            events(CloudEvent::KeyUploaded { id: uploaded.ssh_key.id });
            (uploaded.ssh_key.id, uploaded.ssh_key.name)
        }
    };
    let body = CreateServer {
        name: &request.name,
        server_type: &request.server_type,
        location: &request.location,
        image: &request.image,
        ssh_keys: vec![key_name],
        labels: labels(Some(&fingerprint_label)),
        start_after_create: true,
    };
    let created: CreatedServer = cloud.post("/servers", &body)?;
    let id = created.server.id;
    events(CloudEvent::ServerCreated { id });
    let half_made =
        |error: HetznerError| HetznerError::HalfMade { id, name: request.name.clone(), error: Box::new(error) };
    for action in std::iter::once(&created.action).chain(&created.next_actions) {
        cloud.wait(action, request, events).map_err(half_made)?;
    }
    let rescue_key = request.rescue.then_some(key_id);
    let mut provisioned = bring_up(cloud, created.server, request, rescue_key, events).map_err(half_made)?;
    provisioned.created = true;
    Ok(Some(provisioned))
}

/// The server running (started if off), with its address; booted into rescue with `rescue_key` when given.
/// Only the run that made the server puts it into rescue: a server found again may be in the middle of an
/// install (the RAM OS, kexec'd from rescue), which a reset would cut short; it is only started if off.
fn bring_up(
    cloud: &Cloud,
    server: Server,
    request: &CreateRequest,
    rescue_key: Option<u64>,
    events: &dyn Fn(CloudEvent),
) -> Result<Provisioned, HetznerError> {
    let mut server = server;
    if let Some(key_id) = rescue_key {
        let body = EnableRescue { kind: "linux64", ssh_keys: vec![key_id] };
        let rescue: OneAction = cloud.post(&format!("/servers/{}/actions/enable_rescue", server.id), &body)?;
        cloud.wait(&rescue.action, request, events)?;
        let action = if server.status == "off" { "poweron" } else { "reset" };
        let reset: OneAction = cloud.post_empty(&format!("/servers/{}/actions/{action}", server.id))?;
        cloud.wait(&reset.action, request, events)?;
    } else if server.status == "off" {
        let on: OneAction = cloud.post_empty(&format!("/servers/{}/actions/poweron", server.id))?;
        cloud.wait(&on.action, request, events)?;
    }
    server = cloud.server(server.id)?;
    let address = server
        .ssh_address()
        .ok_or_else(|| HetznerError::Input(format!("server {} has no public address", server.id)))?;
    events(CloudEvent::Ready { id: server.id, address: address.clone() });
    Ok(Provisioned { id: server.id, address, created: false })
}

fn labels(key: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(MADE_BY.0.to_string(), MADE_BY.1.to_string())]);
    if let Some(key) = key {
        labels.insert(KEY_LABEL.to_string(), key.to_string());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(valid_name("web1"));
        assert!(valid_name("web-1.example"));
        assert!(!valid_name("web_1"));
        assert!(!valid_name("-web"));
        assert!(!valid_name(""));
    }

    #[test]
    fn ssh_goes_to_ipv4_else_the_first_ipv6_address() {
        let mut server = Server {
            id: 1,
            name: "a".into(),
            status: "running".into(),
            labels: BTreeMap::new(),
            public_net: PublicNet { ipv4: None, ipv6: Some(Address { ip: "2001:db8:1:2::/64".into() }) },
            rescue_enabled: false,
        };
        assert_eq!(server.ssh_address().as_deref(), Some("2001:db8:1:2::1"));
        server.public_net.ipv4 = Some(Address { ip: "192.0.2.4".into() });
        assert_eq!(server.ssh_address().as_deref(), Some("192.0.2.4"));
    }
}
