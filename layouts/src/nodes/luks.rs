//! LUKS2 containers on a partition or a ZFS volume, opened as `/dev/mapper/<name>`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Content, ContentNode, Site};
use crate::compile::Builder;
use crate::disko::{Object, Reader, Writer};
use crate::error::FieldPath;
use crate::model::Plan;
use crate::nixos::{LuksEntry, ModuleParts};
use crate::steps::{Operation, OperationKind};
use crate::validate::{valid_key_location, Checker};

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_key_location() -> String {
    "prompt".to_string()
}

/// How LUKS2 headers are made: the executor formats with exactly these, and the review prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LuksParameters {
    /// Cipher.
    pub cipher: &'static str,
    /// Cipher mode.
    pub cipher_mode: &'static str,
    /// Volume key size in bits.
    pub key_bits: usize,
    /// Key derivation function.
    pub pbkdf: &'static str,
    /// Hash of the key derivation.
    pub hash: &'static str,
    /// Time the key derivation should take, in milliseconds.
    pub iter_time_ms: u32,
    /// Memory the key derivation may use, in KiB.
    pub memory_kib: u32,
    /// Threads the key derivation may use.
    pub parallel: u32,
}

/// The parameters of every LUKS2 header nix-dabei makes: AES-XTS with a 512-bit key, argon2id tuned to
/// two seconds and up to 1 GiB of memory (cryptsetup's own defaults for LUKS2).
pub const LUKS_PARAMETERS: LuksParameters = LuksParameters {
    cipher: "aes",
    cipher_mode: "xts-plain64",
    key_bits: 512,
    pbkdf: "argon2id",
    hash: "sha256",
    iter_time_ms: 2000,
    memory_kib: 1024 * 1024,
    parallel: 4,
};

/// A LUKS2 container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Luks {
    /// Name of the opened device, `/dev/mapper/<name>`.
    pub name: String,
    /// Where the key comes from when formatting and at boot: `"prompt"` (a passphrase typed or given to
    /// `apply`) or `"file:///path"` (a key file that exists when applying and in the booted initrd).
    #[serde(default = "default_key_location")]
    pub key: String,
    /// LUKS label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The header's UUID. A plan derives it from the container's name; a kept container (in a kept
    /// partition) says the one it has, which identifies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// With `key = "prompt"`: read the passphrase from this file when formatting instead of asking;
    /// the booted system still asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Pass discards through to the disk.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub allow_discards: bool,
    /// Files whose contents become more keys of the header (each in a key slot of its own), read
    /// when formatting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_key_files: Vec<String>,
    /// What the opened container holds.
    pub content: Box<Content>,
}

impl Luks {
    /// The opened device.
    pub fn mapped_device(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }
}

/// Create a LUKS2 header with [`LUKS_PARAMETERS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksFormat {
    /// The device to format.
    pub device: String,
    /// The name it will be opened as.
    pub name: String,
    /// The header's UUID.
    pub uuid: String,
    /// LUKS label.
    pub label: Option<String>,
    /// Where the key comes from: "prompt" or "file:///path".
    pub key: String,
    /// A file holding the passphrase for formatting, instead of asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Files whose contents become more key slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_key_files: Vec<String>,
}

impl LuksFormat {
    /// How many key slots a finished header has: the key and one per additional key file.
    pub fn key_slots(&self) -> usize {
        1 + self.additional_key_files.len()
    }
}

impl OperationKind for LuksFormat {
    fn destroys_data(&self) -> bool {
        true
    }

    fn derives_key(&self) -> bool {
        true
    }

    /// What cryptsetup would be asked for the same header; the executor makes it through libcryptsetup
    /// with the same [`LUKS_PARAMETERS`], the key on no command line.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = LUKS_PARAMETERS;
        write!(
            f,
            "cryptsetup luksFormat --type luks2 --cipher {}-{} --key-size {} --pbkdf {} --hash {} --iter-time {} \
             --pbkdf-memory {} --pbkdf-parallel {} --uuid {}",
            p.cipher, p.cipher_mode, p.key_bits, p.pbkdf, p.hash, p.iter_time_ms, p.memory_kib, p.parallel, self.uuid
        )?;
        if let Some(label) = &self.label {
            write!(f, " --label {}", crate::steps::shell_word(label))?;
        }
        write!(f, " {} (key: {})", self.device, self.key)?;
        for file in &self.additional_key_files {
            write!(f, " && cryptsetup luksAddKey {} {}", self.device, crate::steps::shell_word(file))?;
        }
        Ok(())
    }
}

/// Open a LUKS2 device as `/dev/mapper/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksOpen {
    /// The LUKS device.
    pub device: String,
    /// Mapper name.
    pub name: String,
    /// Where the key comes from: "prompt" or "file:///path".
    pub key: String,
    /// A file holding the passphrase, instead of asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<String>,
    /// Pass discards through.
    pub allow_discards: bool,
}

impl OperationKind for LuksOpen {
    fn destroys_data(&self) -> bool {
        false
    }

    fn derives_key(&self) -> bool {
        true
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cryptsetup open")?;
        if self.allow_discards {
            write!(f, " --allow-discards")?;
        }
        write!(f, " {} {} (key: {})", self.device, self.name, self.key)
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let name = &self.name;
        Some((
            format!("luks-close:{name}"),
            format!("Close /dev/mapper/{name}"),
            Operation::LuksClose(LuksClose { name: name.clone() }),
        ))
    }
}

/// Close a LUKS mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksClose {
    /// Mapper name.
    pub name: String,
}

impl OperationKind for LuksClose {
    fn destroys_data(&self) -> bool {
        false
    }

    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cryptsetup close {}", self.name)
    }
}

impl ContentNode for Luks {
    fn kind(&self) -> &'static str {
        "luks"
    }

    fn children(&self) -> Vec<(&'static str, &Content)> {
        vec![("luks.content", &self.content)]
    }

    fn blkid_signature(&self) -> Option<String> {
        Some("TYPE=crypto_LUKS".to_string())
    }

    /// A container whose key is typed, unless a passphrase file is given for formatting.
    fn needs_passphrase(&self) -> bool {
        (self.key == "prompt" && self.passphrase_file.is_none()) || self.content.needs_passphrase()
    }

    fn validate(&self, check: &mut Checker, plan: &Plan, path: &FieldPath, inside_luks: bool) {
        let luks_path = path.join("luks");
        if inside_luks {
            check.report(luks_path.clone(), "LUKS inside LUKS is not supported");
        }
        let dm_name = |c: char| c.is_ascii_alphanumeric() || "_.-+".contains(c);
        let reserved = [".", "..", "control"].contains(&self.name.as_str());
        if self.name.is_empty() || self.name.len() > 127 || reserved || !self.name.chars().all(dm_name) {
            let message = format!(
                "{} is not a device-mapper name (1 to 127 letters, digits, '_', '.', '-', '+'; not \".\", \"..\" \
                 or \"control\")",
                crate::error::shown(&self.name)
            );
            check.report(luks_path.join("name"), message);
        }
        check.claim_luks_name(&self.name, luks_path.join("name"));
        if let Some(uuid) = self.uuid.as_ref().filter(|u| !crate::gpt::is_guid(u)) {
            check.report(luks_path.join("uuid"), format!("{} is not a UUID", crate::error::shown(uuid)));
        }
        if !valid_key_location(&self.key) {
            check.report(
                luks_path.join("key"),
                format!("{:?} gives no way to get the key: use \"prompt\" or \"file:///path/to/keyfile\"", self.key),
            );
        }
        if let Some(file) = &self.passphrase_file {
            if !file.starts_with('/') {
                check.report(luks_path.join("passphrase_file"), format!("{file:?} is not an absolute path"));
            } else if self.key != "prompt" {
                check.report(
                    luks_path.join("passphrase_file"),
                    "a passphrase file goes with key = \"prompt\"; with a key file it is not used",
                );
            }
        }
        for (index, file) in self.additional_key_files.iter().enumerate() {
            if !file.starts_with('/') || file.chars().any(char::is_control) {
                let at = luks_path.join("additional_key_files").join(format!("[{index}]"));
                check.report(at, format!("{file:?} is not an absolute path"));
            }
        }
        check.content(plan, &self.content, &luks_path.join("content"), true);
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        let owner = site.owner;
        let device = site.device.to_string();
        let format = build.push(
            format!("luks-format:{owner}"),
            format!("Format {owner} as LUKS2 ({})", self.name),
            vec![device.clone()],
            site.disk,
            vec![site.provider.to_string()],
            Operation::LuksFormat(LuksFormat {
                device: device.clone(),
                name: self.name.clone(),
                uuid: self.uuid.as_deref().map_or_else(|| build.plan.luks_uuid(&self.name), str::to_ascii_lowercase),
                label: self.label.clone(),
                key: self.key.clone(),
                passphrase_file: self.passphrase_file.clone(),
                additional_key_files: self.additional_key_files.clone(),
            }),
        );
        let mapped = self.mapped_device();
        let open = build.push(
            format!("luks-open:{owner}"),
            format!("Open {owner} as {mapped}"),
            vec![device.clone(), mapped.clone()],
            site.disk,
            vec![format],
            Operation::LuksOpen(LuksOpen {
                device,
                name: self.name.clone(),
                key: self.key.clone(),
                passphrase_file: self.passphrase_file.clone(),
                allow_discards: self.allow_discards,
            }),
        );
        build.content(&self.content, &Site { device: &mapped, provider: &open, owner, disk: site.disk });
    }

    fn nixos(&self, module: &mut ModuleParts, device: &str) {
        module.luks.push(LuksEntry {
            name: self.name.clone(),
            device: device.to_string(),
            allow_discards: self.allow_discards,
            key_file: self.key.strip_prefix("file://").map(str::to_string),
        });
        if matches!(*self.content, Content::Zfs(_)) {
            module.pool_inside_luks = true;
        }
        module.content(&self.content, &self.mapped_device());
    }

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "luks");
        w.string("name", &self.name);
        if let Some(file) = &self.passphrase_file {
            w.string("passwordFile", file);
        }
        // A container that is already there (read back by probe) keeps its header's UUID: cryptsetup gets
        // the flag that sets it, and import reads it back from there.
        let mut format_args: Vec<String> = self.uuid.iter().flat_map(|u| ["--uuid".to_string(), u.clone()]).collect();
        if let Some(label) = &self.label {
            format_args.extend(["--label".to_string(), label.clone()]);
        }
        if !format_args.is_empty() {
            w.list("extraFormatArgs", &format_args);
        }
        if !self.additional_key_files.is_empty() {
            w.list("additionalKeyFiles", &self.additional_key_files);
        }
        w.open("settings");
        w.line(&format!("allowDiscards = {};", self.allow_discards));
        if let Some(file) = self.key.strip_prefix("file://") {
            w.string("keyFile", file);
        }
        w.close();
        w.content(&self.content);
    }

    fn partition_type(&self) -> &'static str {
        "luks"
    }
}

/// Reads disko's `type = "luks"`: name, key file or password file, label, discards and the content.
pub(crate) fn from_disko(r: &mut Reader, object: &Object, path: &FieldPath, inside_luks: bool) -> Option<Content> {
    if inside_luks {
        r.refuse(&path.join("type"), "LUKS inside LUKS is not supported");
        return None;
    }
    r.only(
        object,
        path,
        &[
            "type",
            "name",
            "content",
            "passwordFile",
            "keyFile",
            "settings",
            "askPassword",
            "extraFormatArgs",
            "extraOpenArgs",
            "additionalKeyFiles",
            "initrdUnlock",
        ],
    );
    for list in ["extraOpenArgs"] {
        if !r.strings(object, list, path).is_empty() {
            r.refuse(&path.join(list), "is not supported by nix-dabei");
        }
    }
    if object.get("initrdUnlock") == Some(&Value::Bool(false)) {
        r.refuse(&path.join("initrdUnlock"), "false is not supported: nix-dabei unlocks LUKS in the initrd");
    }
    // disko passes each item to cryptsetup as written: "--iter-time 1" is one item with a space.
    let format_args: Vec<String> = r
        .strings(object, "extraFormatArgs", path)
        .iter()
        .flat_map(|a| a.split_whitespace().map(str::to_string))
        .collect();
    let (mut label, mut uuid) = (None, None);
    let mut args = format_args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let value = inline.or_else(|| args.next().cloned());
        match (flag, value) {
            ("--label", Some(value)) => label = Some(value),
            ("--uuid", Some(value)) => uuid = Some(value),
            // Key derivation tuning: nix-dabei formats with its own settings (argon2id; weak ones only
            // with --weak-kdf-for-tests), whatever the configuration asked for.
            ("--iter-time" | "-i" | "--pbkdf" | "--pbkdf-memory" | "--pbkdf-parallel", Some(value)) => {
                r.warn(format!(
                    "{}: {flag} {value} not carried over: nix-dabei's own key derivation settings apply",
                    path.join("extraFormatArgs")
                ));
            }
            _ => {
                let message = "only a label (\"--label\" LABEL), a UUID (\"--uuid\" UUID) and key derivation \
                               settings (--iter-time, --pbkdf*) are supported";
                r.refuse(&path.join("extraFormatArgs"), message);
                break;
            }
        }
    }
    let settings_path = path.join("settings");
    let mut allow_discards = false;
    let mut key_file = r.string(object, "keyFile", path);
    if let Some(settings) = object.get("settings").and_then(|v| r.object(v, &settings_path)) {
        r.only(settings, &settings_path, &["allowDiscards", "keyFile"]);
        allow_discards = r.flag(settings, "allowDiscards", &settings_path);
        if let Some(file) = r.string(settings, "keyFile", &settings_path) {
            key_file = Some(file);
        }
    }
    let name = r.string(object, "name", path).unwrap_or_default();
    let inner = match object.get("content") {
        // Without content it may be a device a btrfs names in its extraArgs; the import links the two
        // once every disk is read, and refuses it if none does.
        None | Some(Value::Null) => Content::BtrfsMember(crate::nodes::btrfs::BtrfsMember::unlinked()),
        Some(content) => r.content(content, &path.join("content"), true)?,
    };
    Some(Content::Luks(Luks {
        name,
        key: key_file.map_or_else(|| "prompt".to_string(), |f| format!("file://{f}")),
        label,
        uuid,
        passphrase_file: r.string(object, "passwordFile", path),
        allow_discards,
        additional_key_files: r.strings(object, "additionalKeyFiles", path),
        content: Box::new(inner),
    }))
}
