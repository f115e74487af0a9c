//! Formatting, opening and closing LUKS2 containers.

use layouts::steps::{LuksClose, LuksFormat, LuksOpen};

use super::{blank_or, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};

impl Perform for LuksFormat {
    /// Done when the device carries this plan's header (its UUID is derived from the plan).
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let device = &self.device;
        if !cx.system.exists(device) {
            return Outlook::Todo { destroys: true };
        }
        match cx.system.luks_header(device) {
            Ok(Some(found)) if found.uuid.eq_ignore_ascii_case(&self.uuid) && found.key_slots >= self.key_slots() => {
                Outlook::Done(format!("{device} has this plan's LUKS header, with its keys"))
            }
            // This plan's header without all its key slots: formatting was cut short; it is made again.
            Ok(Some(found)) if found.uuid.eq_ignore_ascii_case(&self.uuid) => Outlook::Todo { destroys: true },
            Ok(Some(found)) => Outlook::Conflict(match &cx.step.keeps {
                Some(kept) => format!(
                    "{device} holds the LUKS header {}, not the one {kept} keeps ({}): give the plan the UUID it has, \
                     or stop keeping it",
                    found.uuid, self.uuid
                ),
                None => format!("{device} holds another LUKS header ({})", found.uuid),
            }),
            Ok(None) => blank_or(cx, device, "crypto_LUKS", None),
            Err(error) => Outlook::Conflict(format!("cannot read the LUKS header on {device}: {error}")),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let key = cx.secrets.key_or_file(&self.key, self.passphrase_file.as_deref())?;
        let more_keys = self
            .additional_key_files
            .iter()
            .map(|file| match crate::secret::Secret::from_file(std::path::Path::new(file)) {
                // An empty key would open the container with nothing (a device node also reads as empty).
                Ok(key) if key.is_empty() => Err(StepError::Conflict(format!(
                    "the additional key file {file} is empty: it would open with no key"
                ))),
                Ok(key) => Ok(key),
                Err(e) => Err(StepError::Conflict(format!("cannot read the additional key file {file}: {e}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        cx.system.luks_format(self, &key, &more_keys, cx.options.weak_kdf)?;
        Ok(())
    }
}

impl Perform for LuksOpen {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let name = &self.name;
        match cx.system.mapping_of(name) {
            None => Outlook::Todo { destroys: false },
            Some(under) if cx.system.kernel_name(&self.device).is_some_and(|k| under.contains(&k)) => {
                Outlook::Done(format!("/dev/mapper/{name} is open"))
            }
            Some(under) => {
                Outlook::Conflict(format!("/dev/mapper/{name} is open on {}, not on {}", under.join(", "), self.device))
            }
        }
    }

    /// A mapping of this name open on another device stays in the way whatever is formatted first.
    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        match self.probe(cx) {
            Outlook::Conflict(why) => Some(why),
            _ => None,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        let key = cx.secrets.key_or_file(&self.key, self.passphrase_file.as_deref())?;
        cx.system.luks_open(self, &key)?;
        let mapped = format!("/dev/mapper/{}", self.name);
        cx.system.wait_for_nodes(&self.device, &[mapped.as_str()])?;
        Ok(())
    }
}

impl Perform for LuksClose {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        match cx.system.mapping_of(&self.name) {
            Some(_) => Outlook::Todo { destroys: false },
            None => Outlook::Done(format!("/dev/mapper/{} is closed", self.name)),
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        cx.system.luks_close(&self.name)?;
        Ok(())
    }
}
