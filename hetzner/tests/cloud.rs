//! `nix-dabei hetzner` against the stand-in of Hetzner's APIs (testkit::hetzner): servers made once and
//! found again, rescue and reset, dry runs, bad input refused before anything is made, rate limits and
//! locks waited out, a half-made server reported; and every request the code sent checked against the
//! Cloud API's OpenAPI description (../shared/reference/hcloud-openapi.json), whose own examples the
//! typed answers must read.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hetzner::cloud::{self, Cloud, CloudEvent, CreateRequest};
use hetzner::{Client, Credentials, HetznerError, PublicKey};
use installer::Secret;
use serde_json::Value;
use testkit::hetzner::{Received, StandIn, ROBOT_PASSWORD, ROBOT_USER, TOKEN};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiXxsQWQ7kSe4Ygf0T3SRDl5tDjPTXK3lsvHaPXw3Nm me@work";
const OTHER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtP/1GXjwQY7HBuYGVb5NttlkN1PyB1LsNPEKwogcv3 other";

fn fingerprint(line: &str) -> String {
    PublicKey::parse(line).map(|k| k.fingerprint).unwrap_or_default()
}

fn cloud_of(standin: &StandIn, token: &str) -> Cloud {
    let client = Client::new(&standin.cloud_url, Credentials::Token(Secret::new(token.as_bytes().to_vec())))
        .expect("a client")
        .with_sleep(|_| {});
    Cloud::new(client)
}

fn request(name: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        server_type: "cx22".into(),
        location: "fsn1".into(),
        image: "debian-12".into(),
        key: PublicKey::parse(KEY).expect("a key"),
        rescue: false,
        dry_run: false,
        poll: Duration::ZERO,
        action_limit: Duration::from_secs(30),
    }
}

/// Runs provision, confirming, and returns its result and events.
fn provision(
    cloud: &Cloud,
    request: &CreateRequest,
) -> (Result<Option<cloud::Provisioned>, HetznerError>, Vec<CloudEvent>) {
    let events = Mutex::new(Vec::new());
    let result = cloud::provision(cloud, request, &|_| true, &|e| events.lock().expect("events").push(e));
    (result, events.into_inner().expect("events"))
}

fn posts(standin: &StandIn) -> Vec<String> {
    standin.state().received.iter().filter(|r| r.method == "POST").map(|r| r.path.clone()).collect()
}

#[test]
fn a_server_is_made_once_labelled_and_found_again() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let (made, events) = provision(&cloud, &request("web1"));
    let made = made.expect("made").expect("not a dry run");
    assert!(made.created);
    assert!(made.address.starts_with("192.0.2."), "{made:?}");
    assert!(matches!(events[0], CloudEvent::Offer(_)), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, CloudEvent::KeyUploaded { .. })), "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, CloudEvent::ActionDone { .. })).count(), 2, "{events:?}");
    assert_eq!(posts(&standin), ["/ssh_keys", "/servers"]);
    {
        let state = standin.state();
        let server = &state.servers[0];
        assert_eq!(server["labels"]["made-by"], "nix-dabei");
        assert_eq!(server["labels"]["nix-dabei-key"], fingerprint(KEY).replace(':', ""));
        assert_eq!(state.ssh_keys[0]["public_key"], KEY.rsplit_once(' ').expect("a comment").0);
    }

    // Again: the same server, nothing made.
    let (again, events) = provision(&cloud, &request("web1"));
    let again = again.expect("found").expect("not a dry run");
    assert_eq!((again.id, again.created, again.address.as_str()), (made.id, false, made.address.as_str()));
    assert!(matches!(events[0], CloudEvent::ServerFound { .. }), "{events:?}");
    assert_eq!(posts(&standin), ["/ssh_keys", "/servers"], "the second run made something");
    // A key the project holds is not uploaded again.
    let (_, events) = provision(&cloud, &request("web2"));
    assert!(events.iter().any(|e| matches!(e, CloudEvent::KeyFound { .. })), "{events:?}");
    assert_eq!(posts(&standin), ["/ssh_keys", "/servers", "/servers"]);
}

#[test]
fn rescue_is_enabled_with_the_key_and_the_server_reset() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let mut asked = request("web1");
    asked.rescue = true;
    let (made, _) = provision(&cloud, &asked);
    let id = made.expect("made").expect("made").id;
    let key_id = standin.state().ssh_keys[0]["id"].clone();
    let received = standin.state().received.clone();
    let rescue = received.iter().find(|r| r.path.ends_with("/actions/enable_rescue")).expect("rescue enabled");
    assert_eq!(rescue.path, format!("/servers/{id}/actions/enable_rescue"));
    assert_eq!(rescue.body.as_ref().map(|b| b["ssh_keys"][0].clone()), Some(key_id));
    assert!(received.iter().any(|r| r.path == format!("/servers/{id}/actions/reset")), "no reset");
    assert_eq!(standin.state().servers[0]["rescue_enabled"], true);
    // Found again (the install under way in the RAM OS): never reset.
    let before = posts(&standin).len();
    let (found, _) = provision(&cloud, &asked);
    assert!(!found.expect("found").expect("found").created);
    assert_eq!(posts(&standin).len(), before, "a server found again was reset: {:?}", posts(&standin));
}

#[test]
fn a_dry_run_shows_the_offer_and_makes_nothing() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let mut asked = request("web1");
    asked.dry_run = true;
    let (result, events) = provision(&cloud, &asked);
    assert_eq!(result.expect("a dry run"), None);
    let Some(CloudEvent::Offer(offer)) = events.first() else { panic!("{events:?}") };
    assert_eq!(
        (offer.monthly_net.as_str(), offer.monthly_gross.as_str(), offer.currency.as_str()),
        ("3.7900", "4.5101", "EUR")
    );
    assert!(offer.uploads_key);
    assert!(posts(&standin).is_empty(), "a dry run made {:?}", posts(&standin));
}

#[test]
fn declining_the_offer_makes_nothing() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let result = cloud::provision(&cloud, &request("web1"), &|_| false, &|_| {});
    assert!(matches!(result, Err(HetznerError::Declined)), "{result:?}");
    assert!(posts(&standin).is_empty());
}

#[test]
fn bad_input_is_refused_before_anything_is_made() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let refused = |asked: CreateRequest| provision(&cloud, &asked).0.expect_err("refused").to_string();

    let mut asked = request("web1");
    asked.server_type = "cx99".into();
    assert!(refused(asked).contains("there is no server type cx99"));
    let mut asked = request("web1");
    asked.location = "mars1".into();
    assert!(refused(asked).contains("there is no location mars1"));
    let mut asked = request("web1");
    (asked.server_type, asked.location) = ("cax11".into(), "nbg1".into());
    let message = refused(asked);
    assert!(message.contains("not offered in nbg1 (it is in fsn1)"), "{message}");
    assert!(refused(request("web_1")).contains("not a host name"));

    let foreign = standin.add_foreign_server("taken");
    let message = refused(request("taken"));
    assert!(message.contains(&format!("id {foreign}")) && message.contains("did not make"), "{message}");
    assert!(posts(&standin).is_empty(), "something was made: {:?}", posts(&standin));

    // A bad token: the API's 401 in plain words, and the token in no message.
    let wrong = cloud_of(&standin, "not-the-token");
    let message = provision(&wrong, &request("web1")).0.expect_err("401").to_string();
    assert!(message.contains("HTTP 401 unauthorized") && message.contains("token was not accepted"), "{message}");
    assert!(!message.contains("not-the-token") && !format!("{wrong:?}").contains("not-the-token"), "{message}");

    // Made with one key, continued with another: refused, naming both fingerprints.
    provision(&cloud, &request("web1")).0.expect("made");
    let mut asked = request("web1");
    asked.key = PublicKey::parse(OTHER_KEY).expect("a key");
    let message = refused(asked);
    assert!(message.contains("another SSH key") && message.contains(&fingerprint(OTHER_KEY)), "{message}");
}

#[test]
fn rate_limits_and_locks_are_waited_out_as_the_headers_say() {
    let standin = StandIn::start(fingerprint);
    let waits = Arc::new(Mutex::new(Vec::new()));
    let seen = waits.clone();
    let client = Client::new(&standin.cloud_url, Credentials::Token(Secret::new(TOKEN.as_bytes().to_vec())))
        .expect("a client")
        .with_sleep(move |d| seen.lock().expect("waits").push(d));
    let cloud = Cloud::new(client);
    standin.state().rate_limited = 2;
    standin.state().locked = 1;
    let mut asked = request("web1");
    asked.rescue = true;
    provision(&cloud, &asked).0.expect("made despite 429 and locked").expect("made");
    let waits = waits.lock().expect("waits").clone();
    assert_eq!(waits.len(), 3, "{waits:?}");
    // RateLimit-Reset is a second ahead: at most that is waited.
    assert!(waits[..2].iter().all(|w| *w <= Duration::from_secs(1)), "{waits:?}");
    let statuses = cloud.client().sent().len();
    assert_eq!(statuses, standin.state().received.len(), "every attempt reached the stand-in");
}

#[test]
fn a_server_made_but_not_brought_up_is_reported_with_its_id_and_how_to_delete_it() {
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    standin.state().failing = Some("start_server".into());
    let error = provision(&cloud, &request("web1")).0.expect_err("the start failed");
    let id = standin.state().servers[0]["id"].as_u64().expect("an id");
    assert!(matches!(error, HetznerError::HalfMade { id: half, .. } if half == id), "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("hcloud server delete {id}")) && message.contains("action_failed"), "{message}");
}

#[test]
fn robot_activates_rescue_with_the_key_and_resets_by_hardware() {
    let standin = StandIn::start(fingerprint);
    standin.add_dedicated(1234567, "198.51.100.7");
    let robot = |password: &str| {
        let credentials =
            Credentials::Basic { user: ROBOT_USER.into(), password: Secret::new(password.as_bytes().to_vec()) };
        Client::new(&standin.robot_url, credentials).expect("a client").with_sleep(|_| {})
    };
    let key = PublicKey::parse(KEY).expect("a key");
    let address = hetzner::robot::address(&robot(ROBOT_PASSWORD), 1234567).expect("the address");
    assert_eq!(address, "198.51.100.7");
    assert!(standin.state().resets.is_empty(), "reading the address reset the server");
    hetzner::robot::rescue(&robot(ROBOT_PASSWORD), 1234567, &key, &|_| {}).expect("rescue");
    {
        let state = standin.state();
        assert_eq!(state.rescue.get(&1234567), Some(&vec![key.fingerprint.clone()]));
        assert_eq!(state.resets, [1234567]);
        assert_eq!(state.robot_keys.len(), 1);
    }
    // Again: the key is Robot's already.
    hetzner::robot::rescue(&robot(ROBOT_PASSWORD), 1234567, &key, &|_| {}).expect("rescue again");
    assert_eq!(standin.state().robot_keys.len(), 1);
    // A wrong password is Robot's 401; an unknown server its 404.
    let message = hetzner::robot::address(&robot("wrong"), 1234567).expect_err("401").to_string();
    assert!(message.contains("401") && !message.contains("wrong"), "{message}");
    let message = hetzner::robot::rescue(&robot("wrong"), 1234567, &key, &|_| {}).expect_err("401").to_string();
    assert!(message.contains("401") && !message.contains("wrong"), "{message}");
    let message = hetzner::robot::rescue(&robot(ROBOT_PASSWORD), 7, &key, &|_| {}).expect_err("404").to_string();
    assert!(message.contains("SERVER_NOT_FOUND"), "{message}");
}

// The Cloud API's description.

fn spec() -> Value {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let file = here
        .ancestors()
        .map(|dir| dir.join("shared/reference/hcloud-openapi.json"))
        .find(|f| f.is_file())
        .expect("../shared/reference/hcloud-openapi.json");
    serde_json::from_slice(&std::fs::read(file).expect("the description")).expect("JSON")
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => resolve(spec, spec.pointer(&format!("/{pointer}")).expect("a $ref that resolves")),
        None => schema,
    }
}

/// The problems of `value` against an OpenAPI 3.0 schema: types, `nullable`, `enum`, `required`, the
/// properties it names (nothing else is sent), `additionalProperties`, `items`, `allOf`, `oneOf`/`anyOf`.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        all.iter().for_each(|s| check(spec, s, value, at, problems));
        return;
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let fits = any.iter().any(|s| {
            let mut found = Vec::new();
            check(spec, s, value, at, &mut found);
            found.is_empty()
        });
        if !fits {
            problems.push(format!("{at}: fits none of the alternatives"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let fits = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !fits {
        problems.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                problems.push(format!("{at}: {required} is required"));
            }
        }
        for (key, item) in object {
            match schema["properties"].get(key) {
                Some(property) => check(spec, property, item, &format!("{at}.{key}"), problems),
                None if schema["additionalProperties"].is_object() => {
                    check(spec, &schema["additionalProperties"], item, &format!("{at}.{key}"), problems)
                }
                None => problems.push(format!("{at}: {key} is not a property the API describes")),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            check(spec, items, item, &format!("{at}[{index}]"), problems);
        }
    }
}

/// The description's path template (`/servers/{id}`) a request's path fits.
fn template<'a>(spec: &'a Value, path: &str) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    spec["paths"].as_object()?.iter().find_map(|(name, item)| {
        let parts: Vec<&str> = name.trim_matches('/').split('/').collect();
        let fits = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(p, s)| p == s || (p.starts_with('{') && s.parse::<u64>().is_ok()));
        fits.then_some((name.as_str(), item))
    })
}

fn problems_of(spec: &Value, received: &Received) -> Vec<String> {
    let mut problems = Vec::new();
    let (path, query) = received.path.split_once('?').unwrap_or((&received.path, ""));
    let Some((name, item)) = template(spec, path) else {
        return vec![format!("{} {path}: no such path in the description", received.method)];
    };
    let operation = &item[received.method.to_ascii_lowercase()];
    if operation.is_null() {
        return vec![format!("{} {name}: the path takes no {}", received.method, received.method)];
    }
    let at = format!("{} {name}", received.method);
    let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !parameters.iter().any(|p| p["in"] == "query" && p["name"] == key) {
            problems.push(format!("{at}: query parameter {key} is not described"));
        }
    }
    let body_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    match (&received.body, body_schema.is_null()) {
        (Some(body), false) => check(spec, body_schema, body, &format!("{at} body"), &mut problems),
        (Some(_), true) => problems.push(format!("{at}: takes no body")),
        (None, false) if operation["requestBody"]["required"] == true => problems.push(format!("{at}: needs a body")),
        (None, _) => {}
    }
    problems
}

/// The problems of the stand-in's answer to `received` against the description's response for its status
/// (`200`, or the class `4xx`): the tests' API answers only what Hetzner's may.
fn answer_problems_of(spec: &Value, received: &Received) -> Vec<String> {
    let Some((status, body)) = &received.answer else { return vec![format!("{}: no answer", received.path)] };
    let path = received.path.split_once('?').map_or(received.path.as_str(), |(p, _)| p);
    let Some((name, item)) = template(spec, path) else { return Vec::new() };
    let at = format!("{} {name} answer {status}", received.method);
    let responses = &item[received.method.to_ascii_lowercase()]["responses"];
    let described = [status.to_string(), format!("{}xx", status / 100)]
        .into_iter()
        .find_map(|key| responses.get(&key).filter(|r| !r.is_null()));
    let Some(response) = described else { return vec![format!("{at}: the status is not described")] };
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        return if body.is_null() { Vec::new() } else { vec![format!("{at}: has a body the API does not")] };
    }
    let mut problems = Vec::new();
    check(spec, schema, body, &at, &mut problems);
    problems
}

/// Every request the code sends, over every flow above (made, found, rescue, dry run, refusals), fits the
/// Cloud API's description: path, method, query parameters and body; and every answer of the stand-in
/// fits the description's response for its status.
#[test]
#[cfg_attr(no_reference, ignore = "needs ../shared/reference beside the checkout (README)")]
fn every_request_sent_fits_the_cloud_apis_description() {
    let spec = spec();
    let standin = StandIn::start(fingerprint);
    let cloud = cloud_of(&standin, TOKEN);
    let mut dry = request("dry");
    dry.dry_run = true;
    provision(&cloud, &dry).0.expect("dry run");
    let mut rescued = request("web1");
    rescued.rescue = true;
    provision(&cloud, &rescued).0.expect("made");
    provision(&cloud, &rescued).0.expect("found");
    let mut rescued_too = request("web3");
    rescued_too.rescue = true;
    // Refused and held back: the API's error answers (401, 429 rate_limit_exceeded, 423 locked).
    provision(&cloud_of(&standin, "not-the-token"), &request("web9")).0.expect_err("401");
    standin.state().rate_limited = 1;
    provision(&cloud, &request("web2")).0.expect("made with the project's key");
    standin.state().locked = 1;
    provision(&cloud, &rescued_too).0.expect("made and rescued after the lock");
    let received: Vec<Received> = standin.state().received.iter().filter(|r| r.api == "cloud").cloned().collect();
    let mut endpoints: Vec<String> =
        received.iter().map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap_or_default())).collect();
    endpoints.sort();
    endpoints.dedup();
    assert!(endpoints.len() >= 9, "{endpoints:?}");
    let problems: Vec<String> = received.iter().flat_map(|r| problems_of(&spec, r)).collect();
    assert!(problems.is_empty(), "requests the description does not allow:\n{}", problems.join("\n"));
    // The stand-in's answers are the API's as described too, or the tests would prove little.
    let statuses: Vec<u16> = received.iter().filter_map(|r| r.answer.as_ref().map(|(status, _)| *status)).collect();
    assert!([401, 423, 429].iter().all(|s| statuses.contains(s)), "{statuses:?}");
    let problems: Vec<String> = received.iter().flat_map(|r| answer_problems_of(&spec, r)).collect();
    assert!(problems.is_empty(), "answers the description does not allow:\n{}", problems.join("\n"));

    // And the check can fail: a body with a field the API does not have, or of the wrong type.
    let mut odd = received.iter().find(|r| r.path == "/servers" && r.method == "POST").expect("a create").clone();
    odd.body.as_mut().expect("a body")["start_after_create"] = Value::from("yes");
    odd.body.as_mut().expect("a body")["colour"] = Value::from("red");
    assert_eq!(problems_of(&spec, &odd).len(), 2, "{:?}", problems_of(&spec, &odd));
}

/// An answer as the description has it: each property's own example, or a value of its type, with every
/// property the schema names (so every required one).
fn instance(spec: &Value, schema: &Value) -> Value {
    let schema = resolve(spec, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in all {
            match instance(spec, part) {
                Value::Object(object) => merged.extend(object),
                other => return other,
            }
        }
        return Value::Object(merged);
    }
    if let Some(first) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()).and_then(|a| a.first()) {
        return instance(spec, first);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("array") => Value::Array(vec![instance(spec, &schema["items"])]),
        Some("string") => Value::from("x"),
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.5),
        Some("boolean") => Value::from(false),
        _ => {
            let properties = schema["properties"].as_object().cloned().unwrap_or_default();
            Value::Object(properties.iter().map(|(k, v)| (k.clone(), instance(spec, v))).collect())
        }
    }
}

/// The typed answers read the description's own examples (or answers built from its schemas, each
/// property with its example): what the real API sends.
#[test]
#[cfg_attr(no_reference, ignore = "needs ../shared/reference beside the checkout (README)")]
fn the_typed_answers_read_the_descriptions_examples() {
    let spec = spec();
    let example = |path: &str, method: &str, status: &str| -> Value {
        let content = &spec["paths"][path][method]["responses"][status]["content"]["application/json"];
        let found = content["examples"].as_object().and_then(|e| e.values().next()).map(|e| e["value"].clone());
        found.unwrap_or_else(|| instance(&spec, &content["schema"]))
    };
    let server: cloud::Server =
        serde_json::from_value(example("/servers/{id}", "get", "200")["server"].clone()).expect("a server");
    assert!(server.ssh_address().is_some(), "{server:?}");
    let created = example("/servers", "post", "201");
    let _: cloud::Server = serde_json::from_value(created["server"].clone()).expect("the made server");
    let _: cloud::Action = serde_json::from_value(created["action"].clone()).expect("its action");
    let listed = example("/servers", "get", "200");
    for server in listed["servers"].as_array().expect("servers") {
        let _: cloud::Server = serde_json::from_value(server.clone()).expect("a listed server");
    }
    let keys = example("/ssh_keys", "get", "200");
    let key: cloud::SshKey = serde_json::from_value(keys["ssh_keys"][0].clone()).expect("a key");
    assert!(key.fingerprint.contains(':'), "{key:?}");
    let types = example("/server_types", "get", "200");
    let kind: cloud::ServerType = serde_json::from_value(types["server_types"][0].clone()).expect("a server type");
    assert!(!kind.prices.is_empty(), "{kind:?}");
    let action: cloud::Action =
        serde_json::from_value(example("/actions/{id}", "get", "200")["action"].clone()).expect("an action");
    assert!(["running", "success", "error"].contains(&action.status.as_str()));
    for path in ["/servers/{id}/actions/enable_rescue", "/servers/{id}/actions/reset", "/servers/{id}/actions/poweron"]
    {
        let _: cloud::Action = serde_json::from_value(example(path, "post", "201")["action"].clone()).expect(path);
    }
    let _: cloud::Named =
        serde_json::from_value(example("/locations", "get", "200")["locations"][0].clone()).expect("a location");
}
