//! A stand-in for the parts of Hetzner's Cloud API (under `/v1`) and Robot web service (under `/robot`)
//! that nix-dabei uses, on 127.0.0.1 only: it keeps SSH keys, servers and actions in memory, answers as
//! the APIs do (their error bodies, `RateLimit-Reset`, `locked`), and records every request so that tests
//! can check each against the API's OpenAPI description.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// The path below `/v1` or `/robot`, with its query.
    pub path: String,
    /// `cloud` or `robot`.
    pub api: &'static str,
    /// The JSON body (Cloud) or the form as pairs (Robot, as a JSON object of arrays).
    pub body: Option<Value>,
    /// What the stand-in answered: the status and the JSON body (for checking it against the API's
    /// description).
    pub answer: Option<(u16, Value)>,
}

/// What the stand-in holds; tests read and change it between requests.
#[derive(Debug, Default)]
pub struct State {
    /// Every request, in order.
    pub received: Vec<Received>,
    /// The project's SSH keys (as the API shows them).
    pub ssh_keys: Vec<Value>,
    /// The project's servers.
    pub servers: Vec<Value>,
    /// Actions: the action and how many more times it is shown running.
    pub actions: BTreeMap<u64, (Value, u32)>,
    /// Answer this many requests with 429 and a `RateLimit-Reset` header.
    pub rate_limited: u32,
    /// Answer this many server actions with 423 `locked`.
    pub locked: u32,
    /// The IPv4 address servers get (else one of 192.0.2.0/24): 127.0.0.1 where a VM of the harness,
    /// reached through a forwarded port, plays the server.
    pub server_ip: Option<String>,
    /// Show every action as running until this is false again (a VM playing the server is booting).
    pub hold_actions: bool,
    /// A reset sets [`State::hold_actions`] (the VM playing the server reboots into rescue) and counts
    /// here.
    pub hold_on_reset: bool,
    /// Resets asked for (Cloud).
    pub cloud_resets: u32,
    /// Fail the next action with this command (`create_server`, `enable_rescue`, ...).
    pub failing: Option<String>,
    /// Robot: the dedicated servers (number to its JSON).
    pub dedicated: BTreeMap<u64, Value>,
    /// Robot: the stored keys.
    pub robot_keys: Vec<Value>,
    /// Robot: servers whose rescue system is active, with the key fingerprints given.
    pub rescue: BTreeMap<u64, Vec<String>>,
    /// Robot: hardware resets asked for.
    pub resets: Vec<u64>,
    next_id: u64,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn action(&mut self, command: &str, resource: u64, polls: u32) -> Value {
        let id = self.id();
        let mut action = json!({
            "id": id, "command": command, "status": "running", "progress": 0, "error": null,
            "started": "2026-12-07T00:00:00Z", "finished": null,
            "resources": [{"id": resource, "type": "server"}],
        });
        if self.failing.as_deref() == Some(command) {
            self.failing = None;
            action["status"] = json!("error");
            action["error"] = json!({"code": "action_failed", "message": "the host could not start the server"});
        }
        self.actions.insert(id, (action.clone(), polls));
        action
    }
}

/// Computes an SSH public key's MD5 fingerprint (given by the test, from the code under test's own
/// reading, so that the stand-in needs no copy of it).
pub type Fingerprint = fn(&str) -> String;

/// The stand-in, serving until the test ends.
#[derive(Debug)]
pub struct StandIn {
    /// `http://127.0.0.1:PORT/v1`.
    pub cloud_url: String,
    /// `http://127.0.0.1:PORT/robot`.
    pub robot_url: String,
    /// What it holds.
    pub state: Arc<Mutex<State>>,
}

/// The Cloud token the stand-in accepts.
pub const TOKEN: &str = "stand-in-token";
/// Robot's user and password.
pub const ROBOT_USER: &str = "#ws+standin";
/// Robot's password.
pub const ROBOT_PASSWORD: &str = "stand-in-password";

impl StandIn {
    /// Starts it on a free port of 127.0.0.1.
    pub fn start(fingerprint: Fingerprint) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().expect("its address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state, fingerprint));
            }
        });
        StandIn {
            cloud_url: format!("http://127.0.0.1:{port}/v1"),
            robot_url: format!("http://127.0.0.1:{port}/robot"),
            state,
        }
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the stand-in's state")
    }

    /// Adds a server as if made in the console (without nix-dabei's label).
    pub fn add_foreign_server(&self, name: &str) -> u64 {
        let mut state = self.state();
        let id = state.id();
        let server = server_json(id, name, BTreeMap::new());
        state.servers.push(server);
        id
    }

    /// Adds a dedicated server to Robot.
    pub fn add_dedicated(&self, number: u64, ip: &str) {
        let server = json!({"server_number": number, "server_ip": ip, "server_ipv6_net": "2001:db8:5::",
            "server_name": format!("ex{number}"), "status": "ready"});
        self.state().dedicated.insert(number, server);
    }
}

/// A server as the API shows one (every property its description requires): of type cx22 in fsn1,
/// booted from debian-12's image.
fn server_json(id: u64, name: &str, labels: BTreeMap<String, String>) -> Value {
    let server_type = server_types().into_iter().next().unwrap_or_default();
    let location = location_json(1, "fsn1");
    json!({
        "id": id, "name": name, "status": "running", "labels": labels, "rescue_enabled": false,
        "created": "2026-12-07T00:00:00Z", "locked": false, "backup_window": null, "iso": null,
        "image": null, "included_traffic": 21990232555520u64, "ingoing_traffic": 0, "outgoing_traffic": 0,
        "primary_disk_size": 40, "private_net": [], "protection": {"delete": false, "rebuild": false},
        "server_type": server_type, "location": location.clone(),
        "datacenter": {"id": 1, "name": "fsn1-dc14", "description": "Falkenstein 1 DC14", "location": location,
            "server_types": {"available": [22], "available_for_migration": [22], "supported": [22, 45]}},
        "public_net": {
            "floating_ips": [],
            "ipv4": {"id": id, "ip": format!("192.0.2.{}", id % 250), "blocked": false, "dns_ptr": "x"},
            "ipv6": {"id": id, "ip": format!("2001:db8:{id}::/64"), "blocked": false, "dns_ptr": []},
        },
    })
}

fn location_json(id: usize, name: &str) -> Value {
    json!({"id": id, "name": name, "city": "x", "country": "DE", "description": name,
        "latitude": 0.0, "longitude": 0.0, "network_zone": "eu-central"})
}

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body, headers: Vec::new() }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, json!({"error": {"code": code, "message": message, "details": null}}))
}

fn serve(stream: TcpStream, state: &Mutex<State>, fingerprint: Fingerprint) {
    let mut reader = BufReader::new(stream.try_clone().expect("a stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let answer = match state.lock() {
        Ok(mut state) => {
            let before = state.received.len();
            let answer = route(&mut state, &method, &target, &headers, &body, fingerprint);
            // Only a request that was recorded (under /v1 or /robot) has its answer recorded.
            if state.received.len() > before {
                if let Some(received) = state.received.last_mut() {
                    received.answer = Some((answer.status, answer.body.clone()));
                }
            }
            answer
        }
        Err(_) => error(500, "stand_in", "its state is poisoned"),
    };
    let text = answer.body.to_string();
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        text.len()
    );
    for (name, value) in answer.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&text);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2&b=3` as `{"a": ["1"], "b": ["2", "3"]}`.
fn pairs(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        found.entry(decode(key)).or_default().push(decode(value));
    }
    found
}

fn route(
    state: &mut State,
    method: &str,
    target: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    fingerprint: Fingerprint,
) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = pairs(query);
    let first = |key: &str| query.get(key).and_then(|v| v.first()).cloned();
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/robot") {
        let form = pairs(&String::from_utf8_lossy(body));
        let recorded = (!body.is_empty()).then(|| json!(form));
        state.received.push(Received {
            method: method.into(),
            path: rest.to_string(),
            api: "robot",
            body: recorded,
            answer: None,
        });
        let expected = format!("Basic {}", basic(&format!("{ROBOT_USER}:{ROBOT_PASSWORD}")));
        if auth != expected {
            return robot_error(401, "UNAUTHORIZED", "Unauthorized");
        }
        return robot(state, method, rest, &form, fingerprint);
    }
    let Some(rest) = path.strip_prefix("/v1") else { return error(404, "not_found", "no such path") };
    let json_body: Option<Value> = (!body.is_empty()).then(|| serde_json::from_slice(body).unwrap_or(Value::Null));
    state.received.push(Received {
        method: method.into(),
        path: target.strip_prefix("/v1").unwrap_or(target).to_string(),
        api: "cloud",
        body: json_body.clone(),
        answer: None,
    });
    if auth != format!("Bearer {TOKEN}") {
        return error(401, "unauthorized", "unable to authenticate");
    }
    if state.rate_limited > 0 {
        state.rate_limited -= 1;
        let mut limited = error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        limited.headers = vec![
            ("RateLimit-Limit".into(), "3600".into()),
            ("RateLimit-Remaining".into(), "0".into()),
            ("RateLimit-Reset".into(), (now + 1).to_string()),
        ];
        return limited;
    }
    let body = json_body.unwrap_or(Value::Null);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["ssh_keys"]) => {
            let keys: Vec<&Value> = state
                .ssh_keys
                .iter()
                .filter(|k| first("fingerprint").is_none_or(|f| k["fingerprint"] == f.as_str()))
                .filter(|k| first("name").is_none_or(|n| k["name"] == n.as_str()))
                .collect();
            answer(200, json!({"ssh_keys": keys, "meta": meta(keys.len())}))
        }
        ("POST", ["ssh_keys"]) => {
            let (Some(name), Some(public_key)) = (body["name"].as_str(), body["public_key"].as_str()) else {
                return invalid("name", "is required");
            };
            let print = fingerprint(public_key);
            if state.ssh_keys.iter().any(|k| k["name"] == name || k["fingerprint"] == print.as_str()) {
                return error(409, "uniqueness_error", "SSH key with the same fingerprint or name already exists");
            }
            let id = state.id();
            let key = json!({"id": id, "name": name, "fingerprint": print, "public_key": public_key,
                "labels": body["labels"].clone(), "created": "2026-12-07T00:00:00Z"});
            state.ssh_keys.push(key.clone());
            answer(201, json!({"ssh_key": key}))
        }
        ("GET", ["servers"]) => {
            let servers: Vec<&Value> =
                state.servers.iter().filter(|s| first("name").is_none_or(|n| s["name"] == n.as_str())).collect();
            answer(200, json!({"servers": servers, "meta": meta(servers.len())}))
        }
        ("POST", ["servers"]) => create_server(state, &body),
        ("GET", ["servers", id]) => {
            match state.servers.iter().find(|s| id.parse::<u64>().is_ok_and(|id| s["id"] == id)) {
                Some(server) => answer(200, json!({"server": server})),
                None => error(404, "not_found", "server not found"),
            }
        }
        ("POST", ["servers", id, "actions", action]) => server_action(state, id, action, &body),
        ("GET", ["actions", id]) => {
            let hold = state.hold_actions;
            let Some((action, polls)) = id.parse::<u64>().ok().and_then(|id| state.actions.get_mut(&id)) else {
                return error(404, "not_found", "action not found");
            };
            if hold {
                // Still running.
            } else if *polls == 0 {
                action["status"] = json!("success");
                action["progress"] = json!(100);
                action["finished"] = json!("2026-12-07T00:00:05Z");
            } else {
                *polls -= 1;
            }
            answer(200, json!({"action": action.clone()}))
        }
        ("GET", ["server_types"]) => {
            let types: Vec<Value> =
                server_types().into_iter().filter(|t| first("name").is_none_or(|n| t["name"] == n.as_str())).collect();
            answer(200, json!({"server_types": types, "meta": meta(types.len())}))
        }
        ("GET", ["locations"]) => {
            let locations: Vec<Value> = ["fsn1", "nbg1", "hel1"]
                .iter()
                .enumerate()
                .filter(|(_, l)| first("name").is_none_or(|n| n == **l))
                .map(|(i, l)| location_json(i + 1, l))
                .collect();
            answer(200, json!({"locations": locations, "meta": meta(locations.len())}))
        }
        ("GET", ["pricing"]) => {
            let gross_net = |net: &str| json!({"net": net, "gross": net});
            answer(
                200,
                json!({"pricing": {"currency": "EUR", "vat_rate": "19.00",
                    "floating_ip": {"price_monthly": gross_net("3.0000")}, "floating_ips": [], "primary_ips": [],
                    "image": {"price_per_gb_month": gross_net("0.0100")},
                    "volume": {"price_per_gb_month": gross_net("0.0440")},
                    "server_backup": {"percentage": "20.00"}, "load_balancer_types": [], "server_types": []}}),
            )
        }
        _ => error(404, "not_found", "the stand-in does not serve this"),
    }
}

fn meta(count: usize) -> Value {
    json!({"pagination": {"page": 1, "per_page": 25, "previous_page": null, "next_page": null,
        "last_page": 1, "total_entries": count}})
}

fn invalid(field: &str, message: &str) -> Answer {
    answer(
        422,
        json!({"error": {"code": "invalid_input", "message": format!("invalid input in field '{field}'"),
            "details": {"fields": [{"name": field, "messages": [message]}]}}}),
    )
}

fn server_types() -> Vec<Value> {
    let price = |location: &str, monthly: &str| {
        json!({"location": location, "included_traffic": 21990232555520u64,
            "price_hourly": {"net": "0.0060", "gross": "0.0071"},
            "price_monthly": {"net": monthly, "gross": format!("{:.4}", monthly.parse::<f64>().unwrap_or(0.0) * 1.19)},
            "price_per_tb_traffic": {"net": "1.0000", "gross": "1.1900"}})
    };
    let location = |id: u64, name: &str| json!({"id": id, "name": name, "deprecation": null});
    vec![
        json!({"id": 22, "name": "cx22", "description": "CX22", "cores": 2, "memory": 4.0, "disk": 40,
            "architecture": "x86", "cpu_type": "shared", "storage_type": "local", "deprecated": false,
            "category": "cost_optimized",
            "locations": [location(1, "fsn1"), location(2, "nbg1"), location(3, "hel1")],
            "prices": [price("fsn1", "3.7900"), price("nbg1", "3.7900"), price("hel1", "3.7900")]}),
        json!({"id": 45, "name": "cax11", "description": "CAX11", "cores": 2, "memory": 4.0, "disk": 40,
            "architecture": "arm", "cpu_type": "shared", "storage_type": "local", "deprecated": false,
            "category": "cost_optimized", "locations": [location(1, "fsn1")], "prices": [price("fsn1", "3.7900")]}),
    ]
}

fn create_server(state: &mut State, body: &Value) -> Answer {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if !server_types().iter().any(|t| t["name"] == body["server_type"]) {
        return invalid("server_type", "server type not found");
    }
    if !["fsn1", "nbg1", "hel1"].iter().any(|l| body["location"] == *l) {
        return invalid("location", "location not found");
    }
    if state.servers.iter().any(|s| s["name"] == name.as_str()) {
        return error(409, "uniqueness_error", "server name is already used");
    }
    let id = state.id();
    let labels: BTreeMap<String, String> = serde_json::from_value(body["labels"].clone()).unwrap_or_default();
    let mut server = server_json(id, &name, labels);
    if let Some(ip) = &state.server_ip {
        server["public_net"]["ipv4"]["ip"] = json!(ip);
    }
    server["status"] = json!("initializing");
    let create = state.action("create_server", id, 2);
    let start = state.action("start_server", id, 1);
    let shown = server.clone();
    server["status"] = json!("running");
    state.servers.push(server);
    answer(201, json!({"server": shown, "action": create, "next_actions": [start], "root_password": null}))
}

fn server_action(state: &mut State, id: &str, action: &str, body: &Value) -> Answer {
    if state.locked > 0 {
        state.locked -= 1;
        return error(423, "locked", "server is locked by another action");
    }
    let Some(index) = state.servers.iter().position(|s| id.parse::<u64>().is_ok_and(|id| s["id"] == id)) else {
        return error(404, "not_found", "server not found");
    };
    let server_id = state.servers[index]["id"].as_u64().unwrap_or_default();
    let command = match action {
        "enable_rescue" => {
            if body["ssh_keys"].as_array().is_none_or(Vec::is_empty) {
                return invalid("ssh_keys", "at least one key");
            }
            state.servers[index]["rescue_enabled"] = json!(true);
            "enable_rescue"
        }
        "reset" => {
            state.cloud_resets += 1;
            state.hold_actions |= state.hold_on_reset;
            "reset_server"
        }
        "poweron" => {
            state.servers[index]["status"] = json!("running");
            "start_server"
        }
        _ => return error(404, "not_found", "the stand-in does not serve this action"),
    };
    let action = state.action(command, server_id, 1);
    // Only enabling rescue answers with a root password (the API's, unused: the key logs in).
    match command {
        "enable_rescue" => answer(201, json!({"action": action, "root_password": "zCWbFhnu950dT23DBE8k"})),
        _ => answer(201, json!({"action": action})),
    }
}

fn robot_error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, json!({"error": {"status": status, "code": code, "message": message}}))
}

fn robot(
    state: &mut State,
    method: &str,
    path: &str,
    form: &BTreeMap<String, Vec<String>>,
    fingerprint: Fingerprint,
) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let number = |s: &str| s.parse::<u64>().ok();
    match (method, segments.as_slice()) {
        ("GET", ["server", n]) => match number(n).and_then(|n| state.dedicated.get(&n)) {
            Some(server) => answer(200, json!({"server": server})),
            None => robot_error(404, "SERVER_NOT_FOUND", "server not found"),
        },
        ("GET", ["key"]) if state.robot_keys.is_empty() => robot_error(404, "NOT_FOUND", "no keys found"),
        ("GET", ["key"]) => answer(200, json!(state.robot_keys.iter().map(|k| json!({"key": k})).collect::<Vec<_>>())),
        ("POST", ["key"]) => {
            let data = form.get("data").and_then(|d| d.first()).cloned().unwrap_or_default();
            let name = form.get("name").and_then(|d| d.first()).cloned().unwrap_or_default();
            let key = json!({"name": name, "fingerprint": fingerprint(&data), "type": "ED25519", "size": 256,
                "data": data, "created_at": "2026-12-07 00:00:00"});
            state.robot_keys.push(key.clone());
            answer(201, json!({"key": key}))
        }
        ("POST", ["boot", n, "rescue"]) => {
            let Some(n) = number(n).filter(|n| state.dedicated.contains_key(n)) else {
                return robot_error(404, "SERVER_NOT_FOUND", "server not found");
            };
            if form.get("os").and_then(|o| o.first()).map(String::as_str) != Some("linux") {
                return answer(
                    400,
                    json!({"error": {"status": 400, "code": "INVALID_INPUT", "message": "invalid input",
                    "invalid": ["os"]}}),
                );
            }
            let keys = form.get("authorized_key[]").cloned().unwrap_or_default();
            state.rescue.insert(n, keys.clone());
            answer(
                200,
                json!({"rescue": {"server_number": n, "os": "linux", "active": true, "password": null,
                "authorized_key": keys}}),
            )
        }
        ("POST", ["reset", n]) => {
            let Some(n) = number(n).filter(|n| state.dedicated.contains_key(n)) else {
                return robot_error(404, "SERVER_NOT_FOUND", "server not found");
            };
            state.resets.push(n);
            answer(200, json!({"reset": {"server_number": n, "type": form.get("type").cloned().unwrap_or_default()}}))
        }
        _ => robot_error(404, "NOT_FOUND", "the stand-in does not serve this"),
    }
}

/// Base64 for the Basic header the stand-in expects.
fn basic(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |g, (i, b)| g | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]) } else { '=' });
        }
    }
    out
}
