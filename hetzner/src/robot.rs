//! Hetzner Robot (dedicated servers): the rescue system activated with the key, a hardware reset, and
//! the server's address, for `nix-dabei hetzner robot install` to install from.

use serde::Deserialize;

use crate::http::{Body, Client};
use crate::key::PublicKey;
use crate::HetznerError;

/// Robot's web service.
pub const ENDPOINT: &str = "https://robot-ws.your-server.de";

/// A dedicated server, as far as nix-dabei reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DedicatedServer {
    /// Its number.
    pub server_number: u64,
    /// Its main IPv4 address.
    pub server_ip: Option<String>,
    /// Its IPv6 network.
    #[serde(default)]
    pub server_ipv6_net: Option<String>,
    /// Its name in Robot.
    #[serde(default)]
    pub server_name: String,
}

#[derive(Deserialize)]
struct OneServer {
    server: DedicatedServer,
}

/// A key stored in Robot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RobotKey {
    /// Its name.
    pub name: String,
    /// MD5 fingerprint, colon-separated.
    pub fingerprint: String,
}

#[derive(Deserialize)]
struct KeyEntry {
    key: RobotKey,
}

#[derive(Deserialize)]
struct RescueEntry {
    rescue: Rescue,
}

#[derive(Deserialize)]
struct Rescue {
    active: bool,
}

/// What [`rescue`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotEvent {
    /// The key was already in Robot, or was stored now.
    Key {
        /// Its fingerprint.
        fingerprint: String,
        /// Whether this run stored it.
        uploaded: bool,
    },
    /// The rescue system is active for the next boot.
    RescueActive,
    /// The hardware reset was asked for.
    Reset,
}

/// The address of server `number`: IPv4, else the first of its IPv6 network. Only reads.
pub fn address(robot: &Client, number: u64) -> Result<String, HetznerError> {
    let server: OneServer =
        from(&format!("GET /server/{number}"), robot.send("GET", &format!("/server/{number}"), None)?)?;
    match (&server.server.server_ip, &server.server.server_ipv6_net) {
        (Some(v4), _) => Ok(v4.clone()),
        (None, Some(net)) => Ok(crate::first_address(net)),
        (None, None) => Err(HetznerError::Input(format!("server {number} has no address"))),
    }
}

/// Activates the Linux rescue system of server `number` with `key` (stored in Robot first where it is
/// not) and resets the server by hardware: whatever runs there now is cut off.
pub fn rescue(robot: &Client, number: u64, key: &PublicKey, events: &dyn Fn(RobotEvent)) -> Result<(), HetznerError> {
    let keys: Vec<KeyEntry> = match robot.send("GET", "/key", None) {
        Ok(value) => from("GET /key", value)?,
        // Robot answers 404 NOT_FOUND when the account holds no key.
        Err(HetznerError::Api { error, .. }) if error.code == "NOT_FOUND" => Vec::new(),
        Err(other) => return Err(other),
    };
    let known = keys.iter().any(|k| k.key.fingerprint == key.fingerprint);
    if !known {
        let name = format!("nix-dabei-{}", &key.fingerprint_label()[..12]);
        let form = vec![("name".to_string(), name), ("data".to_string(), key.line.clone())];
        let stored: KeyEntry = from("POST /key", robot.send("POST", "/key", Some(Body::Form(form)))?)?;
        if stored.key.fingerprint != key.fingerprint {
            return Err(HetznerError::Input(format!(
                "Robot stored the key with fingerprint {}, not {}",
                stored.key.fingerprint, key.fingerprint
            )));
        }
    }
    events(RobotEvent::Key { fingerprint: key.fingerprint.clone(), uploaded: !known });
    let form = vec![("os".to_string(), "linux".to_string()), ("authorized_key[]".to_string(), key.fingerprint.clone())];
    let path = format!("/boot/{number}/rescue");
    let rescue: RescueEntry = from(&format!("POST {path}"), robot.send("POST", &path, Some(Body::Form(form)))?)?;
    if !rescue.rescue.active {
        return Err(HetznerError::Input(format!("server {number}: Robot did not activate the rescue system")));
    }
    events(RobotEvent::RescueActive);
    let form = vec![("type".to_string(), "hw".to_string())];
    robot.send("POST", &format!("/reset/{number}"), Some(Body::Form(form)))?;
    events(RobotEvent::Reset);
    Ok(())
}

fn from<T: serde::de::DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T, HetznerError> {
    serde_json::from_value(value).map_err(|e| HetznerError::Shape { what: what.to_string(), problem: e.to_string() })
}
