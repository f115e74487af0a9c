//! Swap space on a partition, a LUKS container or a ZFS volume.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Content, ContentNode, Site};
use crate::compile::Builder;
use crate::disko::{Object, Reader, Writer};
use crate::error::FieldPath;
use crate::model::Plan;
use crate::nixos::{ModuleParts, SwapEntry};
use crate::programs::Program;
use crate::steps::{CommandLine, Operation, OperationKind};
use crate::validate::Checker;

/// The programs of swap partitions.
pub const PROGRAMS: &[Program] = &[
    Program::target("mkswap", "util-linux", "util-linux", "making swap"),
    Program::target("swapon", "util-linux", "util-linux", "turning swap on after the install"),
    Program::target("swapoff", "util-linux", "util-linux", "turning swap off when the disks are released"),
];

fn is_false(value: &bool) -> bool {
    !*value
}

/// Swap space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// Encrypt with a fresh random key at every boot (the contents never survive a reboot).
    #[serde(default, skip_serializing_if = "is_false")]
    pub random_encryption: bool,
    /// Swap priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Swap label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How the installed system discards freed swap: "once", "pages" or "both".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_policy: Option<String>,
    /// Resume from hibernation from this swap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resume_device: bool,
    /// The swap area's UUID, for swap that is already there (a kept partition's); derived from the plan
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// Make swap space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mkswap {
    /// The device.
    pub device: String,
    /// The swap area's UUID, derived from the plan.
    pub uuid: String,
    /// Swap label.
    pub label: Option<String>,
}

impl OperationKind for Mkswap {
    fn destroys_data(&self) -> bool {
        true
    }

    fn command(&self) -> Option<CommandLine> {
        let mut args = vec!["-U".to_string(), self.uuid.clone()];
        if let Some(label) = &self.label {
            args.extend(["-L".to_string(), label.clone()]);
        }
        args.push(self.device.clone());
        Some(CommandLine { program: "mkswap".into(), args })
    }
}

/// Enable swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapon {
    /// The device.
    pub device: String,
}

impl OperationKind for Swapon {
    /// Turned on with `swapon`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["swapon"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("swapon", [self.device.as_str()]))
    }

    fn undo(&self) -> Option<(String, String, Operation)> {
        let device = &self.device;
        Some((
            format!("swapoff:{device}"),
            format!("Disable swap on {device}"),
            Operation::Swapoff(Swapoff { device: device.clone() }),
        ))
    }
}

/// Disable swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapoff {
    /// The device.
    pub device: String,
}

impl OperationKind for Swapoff {
    /// Turned off with `swapoff`.
    fn other_programs(&self) -> Vec<&'static str> {
        vec!["swapoff"]
    }

    fn destroys_data(&self) -> bool {
        false
    }

    fn command(&self) -> Option<CommandLine> {
        Some(CommandLine::new("swapoff", [self.device.as_str()]))
    }
}

impl ContentNode for Swap {
    fn kind(&self) -> &'static str {
        "swap"
    }

    /// Swap with a random key is made by the installed system at each boot, not by the install.
    fn blkid_signature(&self) -> Option<String> {
        (!self.random_encryption).then(|| "TYPE=swap".to_string())
    }

    fn validate(&self, check: &mut Checker, _plan: &Plan, path: &FieldPath, _inside_luks: bool) {
        if let Some(uuid) = self.uuid.as_ref().filter(|u| !crate::gpt::is_guid(u)) {
            check.report(path.join("swap").join("uuid"), format!("{uuid:?} is not a UUID"));
        }
        if let Some(policy) = &self.discard_policy {
            if !["once", "pages", "both"].contains(&policy.as_str()) {
                check.report(
                    path.join("swap").join("discard_policy"),
                    format!("{policy:?} is not a discard policy (once, pages or both)"),
                );
            }
        }
    }

    fn compile(&self, build: &mut Builder<'_>, site: &Site<'_>) {
        // Swap with a random key is set up by the installed system at each boot; nothing to make now.
        if self.random_encryption {
            return;
        }
        let owner = site.owner;
        let mkswap = build.push(
            format!("mkswap:{owner}"),
            format!("Make swap on {owner}"),
            vec![site.device.to_string()],
            site.disk,
            vec![site.provider.to_string()],
            Operation::Mkswap(Mkswap {
                device: site.device.to_string(),
                uuid: self.uuid.as_ref().map_or_else(|| build.plan.filesystem_uuid(owner), |u| u.to_ascii_lowercase()),
                label: self.label.clone(),
            }),
        );
        build.push(
            format!("swapon:{owner}"),
            format!("Enable swap on {owner}"),
            vec![site.device.to_string()],
            site.disk,
            vec![mkswap],
            Operation::Swapon(Swapon { device: site.device.to_string() }),
        );
    }

    fn nixos(&self, module: &mut ModuleParts, device: &str) {
        module.swaps.push(SwapEntry {
            device: device.to_string(),
            random_encryption: self.random_encryption,
            priority: self.priority,
            discard_policy: self.discard_policy.clone(),
            resume: self.resume_device,
        });
    }

    fn to_disko(&self, w: &mut Writer) {
        w.string("type", "swap");
        if self.random_encryption {
            w.line("randomEncryption = true;");
        }
        if let Some(p) = self.priority {
            w.line(&format!("priority = {p};"));
        }
        if let Some(policy) = &self.discard_policy {
            w.string("discardPolicy", policy);
        }
        if self.resume_device {
            w.line("resumeDevice = true;");
        }
        // Swap that is already there (read back by probe) keeps its UUID: mkswap gets the flag that sets it.
        let mut extra: Vec<String> = self.uuid.iter().flat_map(|uuid| ["-U".to_string(), uuid.clone()]).collect();
        if let Some(label) = &self.label {
            extra.extend(["-L".to_string(), label.clone()]);
        }
        if !extra.is_empty() {
            w.list("extraArgs", &extra);
        }
    }

    fn partition_type(&self) -> &'static str {
        "swap"
    }
}

/// Reads disko's `type = "swap"`.
pub(crate) fn from_disko(r: &mut Reader, object: &Object, path: &FieldPath, _inside_luks: bool) -> Option<Content> {
    r.only(object, path, &["type", "randomEncryption", "priority", "discardPolicy", "resumeDevice", "extraArgs"]);
    let extra = r.strings(object, "extraArgs", path);
    let (mut uuid, mut label) = (None, None);
    for pair in extra.chunks(2) {
        match pair {
            [flag, value] if flag == "-U" && uuid.is_none() => uuid = Some(value.clone()),
            [flag, value] if flag == "-L" && label.is_none() => label = Some(value.clone()),
            _ => {
                let message = "only a UUID (\"-U\" UUID) and a label (\"-L\" LABEL) are supported for swap";
                r.refuse(&path.join("extraArgs"), message);
                break;
            }
        }
    }
    let priority = match object.get("priority") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64().and_then(|p| i32::try_from(p).ok()) {
            Some(p) => Some(p),
            None => {
                r.refuse(&path.join("priority"), "is not a number");
                None
            }
        },
    };
    Some(Content::Swap(Swap {
        uuid,
        random_encryption: r.flag(object, "randomEncryption", path),
        priority,
        label,
        discard_policy: r.string(object, "discardPolicy", path),
        resume_device: r.flag(object, "resumeDevice", path),
    }))
}
