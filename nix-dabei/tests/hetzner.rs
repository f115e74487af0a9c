//! `nix-dabei hetzner cloud create` as a user runs it, against the stand-in of the Cloud API: the offer and
//! its price printed before anything is made, nothing made without confirmation or in a dry run, the token
//! taken from HCLOUD_TOKEN or a file and never printed, and bad input refused in the API's words.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use testkit::hetzner::{StandIn, TOKEN};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiXxsQWQ7kSe4Ygf0T3SRDl5tDjPTXK3lsvHaPXw3Nm me@work\n";

fn fingerprint(line: &str) -> String {
    hetzner::PublicKey::parse(line).map(|k| k.fingerprint).unwrap_or_default()
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("nix-dabei-hetzner-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder");
        std::fs::write(dir.join("id_ed25519.pub"), KEY).expect("the key");
        std::fs::write(dir.join("token"), TOKEN).expect("the token");
        Files { dir }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the command of the README against `api` with server type `kind`.
fn create_with(api: &str, kind: &str, files: &Files, extra: &[&str], token_in_environment: bool) -> Output {
    let key = files.dir.join("id_ed25519.pub");
    let mut command = Command::new(env!("CARGO_BIN_EXE_nix-dabei"));
    command.args(["hetzner", "cloud", "create", "web1", "--type", kind, "--location", "fsn1", "--ssh-key"]);
    command.arg(&key).args(["--api-url", api, "--preset", "mirror", "--disk-select", "largest:2"]);
    command.args(extra).stdin(Stdio::null()).env_remove("HCLOUD_TOKEN");
    if token_in_environment {
        command.env("HCLOUD_TOKEN", TOKEN);
    } else {
        command.arg("--token-file").arg(files.dir.join("token"));
    }
    command.output().expect("nix-dabei runs")
}

fn create(standin: &StandIn, files: &Files, extra: &[&str], token_in_environment: bool) -> Output {
    create_with(&standin.cloud_url, "cx22", files, extra, token_in_environment)
}

fn made(standin: &StandIn) -> Vec<String> {
    standin.state().received.iter().filter(|r| r.method == "POST").map(|r| r.path.clone()).collect()
}

#[test]
fn a_dry_run_prints_the_offer_with_its_price_and_makes_nothing() {
    let standin = StandIn::start(fingerprint);
    let files = Files::new("dry");
    let output = create(&standin, &files, &["--dry-run"], true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("will make server web1 (cx22: 2 cores, 4 GB memory, 40 GB disk, x86) in fsn1"), "{stdout}");
    assert!(stdout.contains("4.5101 EUR a month with VAT (3.7900 without)"), "{stdout}");
    assert!(stdout.contains("dry run: nothing was made"), "{stdout}");
    assert!(made(&standin).is_empty(), "{:?}", made(&standin));
    assert!(!stdout.contains(TOKEN), "the token was printed");
}

#[test]
fn without_yes_and_without_a_terminal_nothing_is_made() {
    let standin = StandIn::start(fingerprint);
    let files = Files::new("unconfirmed");
    let output = create(&standin, &files, &["--json"], false);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("give --yes") && stderr.contains("nothing was made"), "{stderr}");
    let offer = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "hetzner-offer");
    assert!(offer.is_some(), "the offer is a JSON event: {}", String::from_utf8_lossy(&output.stdout));
    assert!(made(&standin).is_empty(), "{:?}", made(&standin));
}

#[test]
fn bad_input_is_refused_in_plain_words_before_anything_is_made() {
    let standin = StandIn::start(fingerprint);
    let files = Files::new("bad");
    let output = create_with(&standin.cloud_url, "cx99", &files, &["--dry-run"], true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("there is no server type cx99"), "{stderr}");
    std::fs::write(files.dir.join("token"), "not-the-token").expect("a wrong token");
    let output = create(&standin, &files, &["--dry-run"], false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 401 unauthorized") && !stderr.contains("not-the-token"), "{stderr}");
    let output = create_with("http://api.example.org/v1", "cx22", &files, &["--dry-run"], true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over https:// only"), "{stderr}");
    // A plan file that does not parse: refused, with its field, before the API is asked anything.
    let before = standin.state().received.len();
    std::fs::write(files.dir.join("bad.toml"), "[disks.a]\nsize = \"huge\"\n").expect("a plan");
    let mut command = Command::new(env!("CARGO_BIN_EXE_nix-dabei"));
    command.args(["hetzner", "cloud", "create", "web1", "--type", "cx22", "--location", "fsn1", "--ssh-key"]);
    command.arg(files.dir.join("id_ed25519.pub")).args(["--api-url", &standin.cloud_url, "--plan"]);
    let output = command.arg(files.dir.join("bad.toml")).env("HCLOUD_TOKEN", TOKEN).output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("disks.a"), "{stderr}");
    assert_eq!(standin.state().received.len(), before, "the API was asked before the plan was read");
    assert!(made(&standin).is_empty());
}

/// `robot install` with `--credentials-file` (user:password, as for the token file): Robot takes them, the
/// password never shows, and a dry run reads the server only (no key stored, no rescue, no reset).
#[test]
fn robot_takes_its_credentials_from_a_file_and_a_dry_run_resets_nothing() {
    let standin = StandIn::start(fingerprint);
    standin.add_dedicated(1234567, "198.51.100.7");
    let files = Files::new("robot");
    let credentials = files.dir.join("robot");
    let password = testkit::hetzner::ROBOT_PASSWORD;
    std::fs::write(&credentials, format!("{}:{password}\n", testkit::hetzner::ROBOT_USER)).expect("credentials");
    let robot = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_nix-dabei"))
            .args(["hetzner", "robot", "install", "1234567", "--ssh-key"])
            .arg(files.dir.join("id_ed25519.pub"))
            .arg("--credentials-file")
            .arg(file)
            .args(["--robot-url", &standin.robot_url, "--preset", "mirror", "--disk-select", "largest:2", "--dry-run"])
            .env_remove("HROBOT_USER")
            .env_remove("HROBOT_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("nix-dabei runs")
    };
    let output = robot(&credentials);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("198.51.100.7") && stdout.contains("was not reset"), "{stdout}");
    let state = standin.state();
    assert_eq!(state.received.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/server/1234567"]);
    assert!(state.resets.is_empty() && state.rescue.is_empty() && state.robot_keys.is_empty());
    drop(state);
    // Wrong ones are Robot's 401, without the password.
    std::fs::write(&credentials, format!("{}:not-{password}\n", testkit::hetzner::ROBOT_USER)).expect("credentials");
    let output = robot(&credentials);
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success() && all.contains("401") && !all.contains(password), "{all}");
}
