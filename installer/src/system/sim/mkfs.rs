//! The simulated mkfs and mkswap, the filesystems' read-only checks, and `tune.exfat`. The label and
//! UUID are read from mkfs's arguments with the functions the plan's own steps are written with
//! ([`Format::label_flag`], [`Format::uuid_from_args`]), so that the two cannot drift apart.

use layouts::steps::CommandLine;
use layouts::Format;

use super::{failed, State};
use crate::command::CommandError;

impl State {
    /// A filesystem's read-only check (`fsck.*`, `e2fsck`, `btrfs check`): passes when the
    /// filesystem was made and not damaged since.
    pub(super) fn check(&self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        self.whole(args.last().copied().unwrap_or_default()).map(|()| String::new()).map_err(|why| failed(line, why))
    }

    /// Whether the filesystem on `device` is whole: made, and not damaged since. It is read in-process
    /// (`System::filesystem_whole`) or by a check program alike.
    pub(super) fn whole(&self, device: &str) -> Result<(), String> {
        let device = self.canonical(device);
        let made = self.signatures.get(&device).is_some_and(|s| !s.is_empty());
        if made && !self.damaged.contains(&device) {
            Ok(())
        } else {
            Err(format!("{device}: the filesystem is not whole"))
        }
    }

    /// `mkfs.FORMAT` or `mkswap`: the signature on the last argument's device, and on every device
    /// named before it (mkfs.btrfs takes all of a filesystem's devices at the end).
    pub(super) fn mkfs(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let program = line.program.as_str();
        let format = Format::ALL.into_iter().find(|f| program.strip_prefix("mkfs.") == Some(f.fs_type()));
        if format.is_none() && program != "mkswap" {
            return Err(failed(line, format!("the simulated machine has no {program}")));
        }
        let device = self.canonical(args.last().copied().unwrap_or_default());
        if !self.exists(&device) {
            return Err(failed(line, format!("{device}: No such file or directory")));
        }
        let devices: Vec<String> =
            args.iter().rev().map(|a| self.canonical(a)).take_while(|d| self.exists(d)).collect();
        let label_flag = format.map_or("-L", Format::label_flag);
        let label = args.windows(2).find(|w| w[0] == label_flag).map(|w| w[1].to_string());
        let given = args.windows(2).find_map(|w| match format {
            Some(format) => format.uuid_from_args(w[0], w[1]),
            None => (w[0] == "-U").then(|| w[1].to_string()),
        });
        let uuid = given.unwrap_or_else(|| self.uuid());
        let kind = format.map_or("swap", Format::fs_type);
        for device in devices {
            self.set_signature(&device, kind, label.clone(), uuid.clone());
            self.damaged.remove(&device);
        }
        Ok(String::new())
    }

    /// tune.exfat: `-I 0xSERIAL` (blkid then reads `SERI-AL..`) or `-L LABEL` (empty: none), on the last
    /// argument's exFAT.
    pub(super) fn tune_exfat(&mut self, line: &CommandLine, args: &[&str]) -> Result<String, CommandError> {
        let device = self.canonical(args.last().copied().unwrap_or_default());
        let Some(exfat) = self.signatures.get_mut(&device).and_then(|s| s.iter_mut().find(|s| s.kind == "exfat"))
        else {
            return Err(failed(line, format!("{device}: no exFAT there")));
        };
        match args {
            ["-I", serial, _] => {
                let hex = serial.trim_start_matches("0x").to_ascii_uppercase();
                if hex.len() != 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(failed(line, format!("invalid serial {serial}")));
                }
                exfat.uuid = Some(format!("{}-{}", &hex[..4], &hex[4..]));
            }
            ["-L", label, _] => exfat.label = (!label.is_empty()).then(|| label.to_string()),
            _ => return Err(failed(line, format!("the simulated tune.exfat cannot do {line}"))),
        }
        Ok(String::new())
    }
}
