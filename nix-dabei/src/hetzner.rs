//! `nix-dabei hetzner`: from credentials to an installed server in one command. A Cloud server is found
//! (by name and nix-dabei's label) or made after the offer and its price are confirmed; a dedicated
//! server is put into its rescue system and reset; then the `remote` phases install it, exactly as
//! `nix-dabei remote` does.

use std::io::IsTerminal;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hetzner::cloud::{self, CloudEvent, CreateRequest, Offer};
use hetzner::robot::{self, RobotEvent};
use hetzner::{Client, Credentials, PublicKey};
use installer::Secret;

use crate::remote::InstallArgs;

/// Arguments of `nix-dabei hetzner`.
#[derive(Debug, Args)]
pub struct HetznerArgs {
    #[command(subcommand)]
    pub api: Api,
}

/// Which of Hetzner's products.
#[derive(Debug, Subcommand)]
pub enum Api {
    /// Hetzner Cloud (token from HCLOUD_TOKEN or --token-file).
    #[command(subcommand)]
    Cloud(CloudCommand),
    /// Hetzner's dedicated servers (Robot; credentials from HROBOT_USER and HROBOT_PASSWORD, or
    /// --credentials-file).
    #[command(subcommand)]
    Robot(RobotCommand),
}

/// Cloud commands.
#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Make the server (or find the one an earlier run made) and install it.
    Create(Box<CloudCreateArgs>),
}

/// Robot commands.
#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// Boot the server into its rescue system with the key, and install it.
    Install(Box<RobotInstallArgs>),
}

/// Arguments of `nix-dabei hetzner cloud create`.
#[derive(Debug, Args)]
pub struct CloudCreateArgs {
    /// The server's name (a host name); a second run with the name continues with its server.
    pub name: String,
    /// The server type, such as cx22.
    #[arg(long = "type", value_name = "TYPE")]
    pub server_type: String,
    /// The location, such as fsn1.
    #[arg(long)]
    pub location: String,
    /// The image it first boots (the RAM OS is kexec'd from it; any stock image will do).
    #[arg(long, default_value = "debian-12")]
    pub image: String,
    /// Boot Hetzner's rescue system first and kexec from there (when this run makes the server; one found
    /// again is never reset, it may be in the middle of an install).
    #[arg(long)]
    pub rescue: bool,
    /// The public key root logs in with (the private key beside it, without .pub, is used to connect).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: PathBuf,
    /// A file holding the API token (else HCLOUD_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The API's address (a stand-in on 127.0.0.1 for tests).
    #[arg(long, value_name = "URL", default_value = cloud::ENDPOINT)]
    pub api_url: String,
    /// Make the server without asking (the offer and its price are still printed).
    #[arg(long)]
    pub yes: bool,
    /// Seconds an action of the API (create, start, rescue, reset) may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub action_timeout: u64,
    #[command(flatten)]
    pub install: InstallArgs,
}

/// Arguments of `nix-dabei hetzner robot install`.
#[derive(Debug, Args)]
pub struct RobotInstallArgs {
    /// The server's number in Robot.
    pub number: u64,
    /// The public key the rescue system lets in (the private key beside it, without .pub, connects).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: PathBuf,
    /// A file holding `user:password` of the Robot web service user (else HROBOT_USER, HROBOT_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Robot's address (a stand-in on 127.0.0.1 for tests).
    #[arg(long, value_name = "URL", default_value = robot::ENDPOINT)]
    pub robot_url: String,
    #[command(flatten)]
    pub install: InstallArgs,
}

/// Runs `nix-dabei hetzner`.
pub fn run(args: HetznerArgs) -> Result<()> {
    match args.api {
        Api::Cloud(CloudCommand::Create(args)) => cloud_create(*args),
        Api::Robot(RobotCommand::Install(args)) => robot_install(*args),
    }
}

fn read_key(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PublicKey::parse(&text).with_context(|| path.display().to_string())
}

/// The private key beside `key.pub`, when the user named no identity.
fn identity_options(public: &Path, install: &InstallArgs) -> Vec<String> {
    let private = public.with_extension("");
    if install.identity.is_empty() && private != public && private.is_file() {
        return vec!["-i".to_string(), private.display().to_string()];
    }
    Vec::new()
}

/// Host keys of a server this command made: trusted on first use and kept in a file of its own for the
/// server (the user's known_hosts is neither read nor written for it), so that a later run checks the
/// same keys. A run that made the server or put it into rescue starts the file afresh: its keys are new.
/// (The remote phases pin the keys they connect with for the rest of the run, as `remote` does.)
fn host_key_options(server: &str, fresh: bool) -> Result<Vec<String>> {
    let file = known_hosts_file(server)?;
    if fresh {
        let _ = std::fs::remove_file(&file);
    }
    Ok(vec![
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", file.display()),
    ])
}

/// The file of a server's host keys, kept between runs (its folder made where missing).
fn known_hosts_file(server: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cache"));
    let folder = cache.join("nix-dabei/hetzner");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    Ok(folder.join(format!("{server}.known_hosts")))
}

fn secret_from(file: Option<&Path>, variable: &str, what: &str) -> Result<Secret> {
    let secret = match file {
        Some(path) => Secret::from_file(path).with_context(|| format!("reading {}", path.display()))?,
        None => match std::env::var_os(variable) {
            Some(value) => {
                // Taken out of the environment, so that no program run later (ssh, nix) inherits it.
                std::env::remove_var(variable);
                Secret::new(value.into_encoded_bytes())
            }
            None => bail!("give the {what}: {variable}, or a file with --{}", what.replace(' ', "-")),
        },
    };
    Ok(secret)
}

fn cloud_create(args: CloudCreateArgs) -> Result<()> {
    args.install.check()?;
    let key = read_key(&args.ssh_key)?;
    let token = secret_from(args.token_file.as_deref(), "HCLOUD_TOKEN", "token file")?;
    let cloud = cloud::Cloud::new(Client::new(&args.api_url, Credentials::Token(token))?);
    let request = CreateRequest {
        name: args.name.clone(),
        server_type: args.server_type.clone(),
        location: args.location.clone(),
        image: args.image.clone(),
        key,
        rescue: args.rescue,
        dry_run: args.install.dry_run,
        poll: Duration::from_secs(1),
        action_limit: Duration::from_secs(args.action_timeout),
    };
    let json = args.install.json;
    let confirm = |_: &Offer| confirm_offer(args.yes, json);
    let started = Instant::now();
    let provisioned = cloud::provision(&cloud, &request, &confirm, &|event| print_cloud(&event, json))?;
    let requests = cloud.client().sent().len();
    say(
        json,
        "hetzner-requests",
        &format!("{requests} request(s) to the Cloud API in {:.1} s", started.elapsed().as_secs_f64()),
    );
    let Some(server) = provisioned else {
        say(json, "hetzner-dry-run", "dry run: nothing was made");
        return Ok(());
    };
    let mut options = identity_options(&args.ssh_key, &args.install);
    options.extend(host_key_options(&format!("cloud-{}", server.id), server.created)?);
    let port = args.install.port.unwrap_or(22);
    wait_for_ssh(&server.address, port, Duration::from_secs(args.install.boot_timeout), json)?;
    crate::remote::run_on(&format!("root@{}", ssh_host(&server.address)), &args.install, options)
}

fn robot_install(args: RobotInstallArgs) -> Result<()> {
    args.install.check()?;
    let key = read_key(&args.ssh_key)?;
    let credentials = match &args.credentials_file {
        Some(path) => {
            let secret = Secret::from_file(path).with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8_lossy(secret.expose());
            let Some((user, password)) = text.trim_end().split_once(':') else {
                bail!("{}: expected user:password", path.display());
            };
            Credentials::Basic { user: user.to_string(), password: Secret::new(password.as_bytes().to_vec()) }
        }
        None => {
            let user =
                std::env::var("HROBOT_USER").context("give HROBOT_USER and HROBOT_PASSWORD, or --credentials-file")?;
            Credentials::Basic { user, password: secret_from(None, "HROBOT_PASSWORD", "credentials file")? }
        }
    };
    let client = Client::new(&args.robot_url, credentials)?;
    let json = args.install.json;
    let address = robot::address(&client, args.number)?;
    if args.install.dry_run {
        say(json, "hetzner-dry-run", &format!("dry run: server {} ({address}) was not reset", args.number));
        return Ok(());
    }
    let destination = format!("root@{}", ssh_host(&address));
    let server = format!("robot-{}", args.number);
    let mut options = identity_options(&args.ssh_key, &args.install);
    let port = args.install.port.unwrap_or(22);
    if runs_the_ram_os_of_an_earlier_run(&destination, &server, &options, &args.install)? {
        // A reset now would cut off the install an earlier run left there; the remote phases continue it.
        say(
            json,
            "hetzner-server-found",
            &format!(
                "server {} runs the RAM OS of an earlier run (with the host key kept then): no rescue, no reset",
                args.number
            ),
        );
        options.extend(host_key_options(&server, false)?);
    } else {
        robot::rescue(&client, args.number, &key, &|event| print_robot(&event, json))?;
        options.extend(host_key_options(&server, true)?);
        // The reset takes the old system down before rescue answers: wait for it to go first.
        std::thread::sleep(Duration::from_secs(20));
        wait_for_ssh(&address, port, Duration::from_secs(args.install.boot_timeout), json)?;
    }
    crate::remote::run_on(&destination, &args.install, options)
}

/// Whether the server answers, with the host key an earlier run of this command kept for it, from
/// nix-dabei's RAM OS (which that run kexec'd). Anything else (no key kept, no answer, another key,
/// another system) is no: the server is then put into rescue.
fn runs_the_ram_os_of_an_earlier_run(
    destination: &str,
    server: &str,
    identity: &[String],
    install: &InstallArgs,
) -> Result<bool> {
    let kept = known_hosts_file(server)?;
    if !std::fs::metadata(&kept).is_ok_and(|m| m.len() > 0) {
        return Ok(false);
    }
    let mut options = identity.to_vec();
    options.extend(install.port.map(|port| ["-p".to_string(), port.to_string()]).into_iter().flatten());
    options.extend(["-o".to_string(), "StrictHostKeyChecking=yes".to_string(), "-o".to_string()]);
    options.push(format!("UserKnownHostsFile={}", kept.display()));
    options.extend(["-o".to_string(), "ConnectTimeout=10".to_string()]);
    let far = remote::Ssh::new(destination, options)?;
    let answer = remote::Far::run(&far, "test -f /etc/nix-dabei/ram-os && echo ram-os\n", None);
    Ok(answer.is_ok_and(|text| text.trim() == "ram-os"))
}

/// An address as ssh takes it after `root@` (IPv6 without brackets).
fn ssh_host(address: &str) -> &str {
    address.trim_start_matches('[').trim_end_matches(']')
}

/// Whether an SSH server answers at `address` with its banner: a port that takes the connection only (a
/// forwarding in front of a machine still booting) is not enough.
fn ssh_banner(address: &std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(address, Duration::from_secs(5)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut start = [0u8; 4];
    std::io::Read::read_exact(&mut stream, &mut start).is_ok() && &start == b"SSH-"
}

/// Waits until SSH answers at `address` and `port`.
fn wait_for_ssh(address: &str, port: u16, limit: Duration, json: bool) -> Result<()> {
    let started = Instant::now();
    let target = if address.contains(':') { format!("[{address}]:{port}") } else { format!("{address}:{port}") };
    loop {
        let reachable = target.to_socket_addrs().ok().and_then(|mut a| a.next()).is_some_and(|a| ssh_banner(&a));
        if reachable {
            say(json, "hetzner-ssh", &format!("{address} answers SSH after {:.0} s", started.elapsed().as_secs_f64()));
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{address} did not answer SSH within {} s (--boot-timeout)", limit.as_secs());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn say(json: bool, event: &str, line: &str) {
    if json {
        println!("{}", serde_json::json!({"event": event, "message": line}));
    } else {
        println!("{line}");
    }
}

fn offer_line(offer: &Offer) -> String {
    let kind = &offer.server_type;
    format!(
        "will make server {} ({}: {} cores, {} GB memory, {} GB disk, {}) in {} from {}{}: {} {} a month with VAT \
         ({} without), billed by the hour while it exists",
        offer.name,
        kind.name,
        kind.cores,
        kind.memory,
        kind.disk,
        kind.architecture,
        offer.location,
        offer.image,
        if offer.uploads_key { ", uploading the SSH key" } else { "" },
        offer.monthly_gross,
        offer.currency,
        offer.monthly_net,
    )
}

/// Whether to make what the printed offer says.
fn confirm_offer(yes: bool, json: bool) -> bool {
    if yes {
        return true;
    }
    if json || !std::io::stdin().is_terminal() {
        eprintln!("nix-dabei: not making the server without confirmation: give --yes");
        return false;
    }
    eprint!("Make it? Type yes: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && line.trim() == "yes"
}

fn print_cloud(event: &CloudEvent, json: bool) {
    let (name, line) = match event {
        CloudEvent::KeyFound { id, name } => {
            ("hetzner-key-found", format!("the project holds the SSH key as {name} ({id})"))
        }
        CloudEvent::KeyUploaded { id } => ("hetzner-key-uploaded", format!("uploaded the SSH key ({id})")),
        CloudEvent::ServerFound { id, status } => (
            "hetzner-server-found",
            format!("server {id} made by an earlier run is there ({status}): continuing with it"),
        ),
        CloudEvent::Offer(offer) => ("hetzner-offer", offer_line(offer)),
        CloudEvent::ServerCreated { id } => ("hetzner-server-created", format!("made server {id}")),
        CloudEvent::ActionDone { command, seconds } => {
            ("hetzner-action", format!("{command} done after {seconds:.0} s"))
        }
        CloudEvent::Ready { id, address } => ("hetzner-ready", format!("server {id} is up at {address}")),
    };
    say(json, name, &line);
}

fn print_robot(event: &RobotEvent, json: bool) {
    let (name, line) = match event {
        RobotEvent::Key { fingerprint, uploaded: true } => {
            ("hetzner-key-uploaded", format!("stored the SSH key {fingerprint} in Robot"))
        }
        RobotEvent::Key { fingerprint, uploaded: false } => {
            ("hetzner-key-found", format!("Robot holds the SSH key {fingerprint}"))
        }
        RobotEvent::RescueActive => ("hetzner-rescue", "the rescue system is active for the next boot".to_string()),
        RobotEvent::Reset => ("hetzner-reset", "hardware reset asked for".to_string()),
    };
    say(json, name, &line);
}
