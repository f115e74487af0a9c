//! LVM: physical volumes, volume groups, logical volumes, activation; read back with `pvs` and `lvs`
//! in JSON.

use layouts::steps::{LvCreate, PvCreate, VgActivate, VgCreate, VgDeactivate};
use serde_json::Value;

use super::{blank_or, run_own_command, Perform, ProbeContext, RunContext};
use crate::execute::{Outlook, StepError};
use layouts::steps::CommandLine;

/// One row of `pvs` or `lvs`.
type Row = serde_json::Map<String, Value>;

/// Rows of an LVM report (`--reportformat json`): `{"report": [{"pv": [{...}, ...]}]}`.
fn report(cx: &ProbeContext<'_>, program: &str, kind: &str, fields: &str) -> Result<Vec<Row>, String> {
    let line = CommandLine::new(program, ["--reportformat", "json", "-o", fields]);
    let output = cx.reports.run(cx.system, &line).map_err(|e| format!("cannot read LVM's {kind}s: {e}"))?;
    let value: Value = serde_json::from_str(&output).map_err(|e| format!("`{line}` printed no JSON report: {e}"))?;
    let rows = value["report"].as_array().and_then(|r| r.first()).and_then(|r| r[kind].as_array());
    let rows = rows.ok_or_else(|| format!("`{line}` printed no {kind} list"))?;
    Ok(rows.iter().filter_map(|r| r.as_object().cloned()).collect())
}

fn field<'a>(row: &'a Row, name: &str) -> &'a str {
    row.get(name).and_then(Value::as_str).unwrap_or_default()
}

impl Perform for PvCreate {
    /// Done when the device carries this plan's physical volume (its UUID is derived from the plan).
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        blank_or(cx, &self.device, "LVM2_member", Some(&self.uuid))
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}

/// Done when the group is made of exactly the plan's physical volumes (and, kept, has its UUID: one
/// listing serves both); a conflict when another group holds one of them, or the name belongs to a group
/// of other volumes, or a kept group has another UUID.
fn look(op: &VgCreate, cx: &ProbeContext<'_>) -> Outlook {
    let pvs = match report(cx, "pvs", "pv", "pv_name,pv_uuid,vg_name,vg_uuid") {
        Ok(pvs) => pvs,
        Err(why) => return Outlook::Conflict(why),
    };
    let ours = |row: &Row| op.uuids.iter().any(|u| u.eq_ignore_ascii_case(field(row, "pv_uuid")));
    for row in &pvs {
        let (group, name) = (field(row, "vg_name"), field(row, "pv_name"));
        if ours(row) && !group.is_empty() && group != op.name {
            return Outlook::Conflict(format!("{name} belongs to volume group {group}, not {}", op.name));
        }
        if !ours(row) && group == op.name {
            return Outlook::Conflict(format!(
                "a volume group {} already exists with {name}, which is not the plan's: rename or remove it",
                op.name
            ));
        }
    }
    let members: Vec<&Row> = pvs.iter().filter(|r| ours(r) && field(r, "vg_name") == op.name).collect();
    if members.len() != op.uuids.len() {
        // A kept group's volumes may not be visible yet (in containers opened by earlier steps): to do, and
        // performing it is refused.
        return Outlook::Todo { destroys: false };
    }
    // A kept group may only be found, with its UUID.
    let found = members.first().map(|row| field(row, "vg_uuid"));
    match (&op.uuid, found) {
        (Some(uuid), found) if !found.is_some_and(|f| f.eq_ignore_ascii_case(uuid)) => Outlook::Conflict(format!(
            "volume group {} has UUID {}, not the kept group's {uuid}",
            op.name,
            found.unwrap_or("(none)")
        )),
        _ => Outlook::Done(format!("volume group {} is made of the plan's physical volumes", op.name)),
    }
}

/// What stops a kept group or volume from being made: it is not there as the plan says.
fn kept_missing(what: &str, uuid: &str) -> StepError {
    StepError::Conflict(format!("kept {what} ({uuid}) is not there: it is never made anew"))
}

impl Perform for VgCreate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        look(self, cx)
    }

    /// A group of the name made of other volumes is in the way whatever is made first.
    fn taken_by_others(&self, cx: &ProbeContext<'_>) -> Option<String> {
        match look(self, cx) {
            Outlook::Conflict(why) if why.contains("not the plan's") => Some(why),
            _ => None,
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        if let Some(uuid) = &self.uuid {
            return Err(kept_missing(&format!("volume group {}", self.name), uuid));
        }
        run_own_command(cx)
    }
}

impl Perform for LvCreate {
    /// Done when the group (the plan's own, as the step before checked) has the volume; a kept volume
    /// must be there with its UUID (another is a conflict), and is never made.
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        let lvs = match report(cx, "lvs", "lv", "lv_name,vg_name,lv_uuid") {
            Ok(lvs) => lvs,
            Err(why) => return Outlook::Conflict(why),
        };
        let found = lvs.iter().find(|r| field(r, "vg_name") == self.group && field(r, "lv_name") == self.name);
        let volume = format!("{}/{}", self.group, self.name);
        match (found, &self.uuid) {
            (Some(row), Some(uuid)) if !field(row, "lv_uuid").eq_ignore_ascii_case(uuid) => Outlook::Conflict(format!(
                "logical volume {volume} has UUID {}, not the kept volume's {uuid}",
                field(row, "lv_uuid")
            )),
            (Some(_), _) => Outlook::Done(format!("logical volume {volume} exists")),
            // Its group may not be visible yet (in containers opened by earlier steps); performing is refused.
            (None, _) => Outlook::Todo { destroys: false },
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        if let Some(uuid) = &self.uuid {
            return Err(kept_missing(&format!("logical volume {}/{}", self.group, self.name), uuid));
        }
        run_own_command(cx)
    }
}

impl Perform for VgActivate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if self.devices.iter().all(|d| cx.system.exists(d)) {
            Outlook::Done(format!("the volumes of {} are active", self.name))
        } else {
            Outlook::Todo { destroys: false }
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)?;
        cx.system.settle();
        Ok(())
    }
}

impl Perform for VgDeactivate {
    fn probe(&self, cx: &ProbeContext<'_>) -> Outlook {
        if self.devices.iter().any(|d| cx.system.exists(d)) {
            Outlook::Todo { destroys: false }
        } else {
            Outlook::Done(format!("the volumes of {} are inactive", self.name))
        }
    }

    fn perform(&self, cx: &RunContext<'_>) -> Result<(), StepError> {
        run_own_command(cx)
    }
}
