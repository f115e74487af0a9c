//! LVM's reports: `pvs` and `lvs` with `--reportformat json`, read into typed rows that the operations
//! (`ops/lvm.rs`), adopt and the simulator share. Each report has one command line, so that the probes
//! of a run and adopt ask LVM once (the executor keeps a report until something is written).
//!
//! LVM prints every field as a string, "" where there is nothing (a physical volume in no group, a
//! volume in no pool): those are `None` here, and sizes are bytes (`--units b --nosuffix`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use layouts::CommandLine;

use super::ToolOutputError;

/// A physical volume as `pvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalVolume {
    /// `pv_name`: its device, as LVM names it (a mapper path for one in a LUKS container).
    #[serde(rename = "pv_name")]
    pub device: String,
    /// `pv_uuid`.
    #[serde(rename = "pv_uuid")]
    pub uuid: String,
    /// `vg_name`: the group it belongs to.
    #[serde(rename = "vg_name", with = "empty_is_none")]
    pub group: Option<String>,
    /// `vg_uuid`: that group's UUID.
    #[serde(rename = "vg_uuid", with = "empty_is_none")]
    pub group_uuid: Option<String>,
}

/// A logical volume as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalVolume {
    /// `vg_name`: its group.
    #[serde(rename = "vg_name")]
    pub group: String,
    /// `lv_name`.
    #[serde(rename = "lv_name")]
    pub name: String,
    /// `lv_uuid`.
    #[serde(rename = "lv_uuid")]
    pub uuid: String,
    /// `lv_size` in bytes (for a thin volume its virtual size).
    #[serde(rename = "lv_size", with = "bytes")]
    pub size: u64,
    /// `segtype`: `linear`, `thin-pool`, `thin`, `raid1`, `raid5_ls`, ...
    #[serde(rename = "segtype")]
    pub segment_type: String,
    /// `pool_lv`: the thin pool a thin volume is in.
    #[serde(rename = "pool_lv", with = "empty_is_none")]
    pub pool: Option<String>,
}

const PVS: &str = "pvs --reportformat json";
const LVS: &str = "lvs --reportformat json";

/// The one `pvs` command: every physical volume the machine sees.
pub fn physical_volumes_command() -> CommandLine {
    report_command("pvs", "pv_name,pv_uuid,vg_name,vg_uuid")
}

/// The one `lvs` command: every (visible) logical volume of every group.
pub fn logical_volumes_command() -> CommandLine {
    report_command("lvs", "vg_name,lv_name,lv_uuid,lv_size,segtype,pool_lv")
}

fn report_command(program: &str, fields: &str) -> CommandLine {
    CommandLine::new(program, ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields])
}

/// `{"report": [{"pv": [...]}]}`: LVM prints one section per report; these commands ask for one.
#[derive(Serialize, Deserialize)]
struct Report<S> {
    report: (S,),
}

#[derive(Serialize, Deserialize)]
struct PvSection {
    pv: Vec<PhysicalVolume>,
}

#[derive(Serialize, Deserialize)]
struct LvSection {
    lv: Vec<LogicalVolume>,
}

/// Reads `pvs`'s report; a field missing or of another form is an error naming it.
pub fn parse_physical_volumes(text: &str) -> Result<Vec<PhysicalVolume>, ToolOutputError> {
    parse::<PvSection>(PVS, text).map(|report| report.report.0.pv)
}

/// Reads `lvs`'s report; a field missing or of another form is an error naming it.
pub fn parse_logical_volumes(text: &str) -> Result<Vec<LogicalVolume>, ToolOutputError> {
    parse::<LvSection>(LVS, text).map(|report| report.report.0.lv)
}

/// What `pvs` prints for these volumes: what the simulator answers.
pub fn print_physical_volumes(volumes: &[PhysicalVolume]) -> String {
    print(&Report { report: (PvSection { pv: volumes.to_vec() },) })
}

/// What `lvs` prints for these volumes: what the simulator answers.
pub fn print_logical_volumes(volumes: &[LogicalVolume]) -> String {
    print(&Report { report: (LvSection { lv: volumes.to_vec() },) })
}

fn print<S: Serialize>(report: &Report<S>) -> String {
    // Serializing plain strings and tuples cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

fn parse<S: DeserializeOwned>(tool: &'static str, text: &str) -> Result<Report<S>, ToolOutputError> {
    super::read_json(tool, text, "not LVM's report")
}

/// LVM's "" for nothing.
mod empty_is_none {
    use super::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Some(text).filter(|t| !t.is_empty()))
    }

    pub fn serialize<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_deref().unwrap_or(""))
    }
}

/// A size in bytes, printed by LVM as a string of digits.
mod bytes {
    use super::{Deserialize, Deserializer, Serializer};
    use serde::de::Error;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| D::Error::custom(format!("{text:?} is not a number of bytes")))
    }

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured in the VM (`vm-tests lvm-thin-on-luks`, its verify.sh), from LVM 2.03.
    const PVS_FIXTURE: &str = include_str!("../../tests/fixtures/lvm-pvs.json");
    const LVS_FIXTURE: &str = include_str!("../../tests/fixtures/lvm-lvs.json");

    #[test]
    fn the_commands_are_the_ones_captured() {
        assert_eq!(
            physical_volumes_command().to_string(),
            "pvs --reportformat json --units b --nosuffix -o pv_name,pv_uuid,vg_name,vg_uuid"
        );
        assert_eq!(
            logical_volumes_command().to_string(),
            "lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_uuid,lv_size,segtype,pool_lv"
        );
    }

    #[test]
    fn lvms_own_reports_are_read_field_for_field() {
        let pvs = parse_physical_volumes(PVS_FIXTURE).expect("pvs reads");
        assert_eq!(pvs.len(), 2, "{pvs:?}");
        assert!(pvs.iter().all(|pv| pv.device.starts_with("/dev/mapper/")), "{pvs:?}");
        assert!(pvs.iter().all(|pv| pv.group.as_deref() == Some("main")), "{pvs:?}");
        assert!(pvs.iter().all(|pv| pv.uuid.len() == 38 && pv.group_uuid.as_ref().is_some_and(|u| u.len() == 38)));
        let lvs = parse_logical_volumes(LVS_FIXTURE).expect("lvs reads");
        let kinds: Vec<(&str, &str, Option<&str>)> =
            lvs.iter().map(|lv| (lv.name.as_str(), lv.segment_type.as_str(), lv.pool.as_deref())).collect();
        assert_eq!(
            kinds,
            [
                ("home", "thin", Some("pool")),
                ("pool", "thin-pool", None),
                ("root", "thin", Some("pool")),
                ("srv", "raid1", None)
            ]
        );
        assert!(lvs.iter().all(|lv| lv.group == "main" && lv.size > 0 && lv.size % 512 == 0), "{lvs:?}");
    }

    #[test]
    fn the_simulators_reports_are_lvms_field_for_field() {
        for (fixture, reprint) in [
            (PVS_FIXTURE, print_physical_volumes(&parse_physical_volumes(PVS_FIXTURE).expect("pvs"))),
            (LVS_FIXTURE, print_logical_volumes(&parse_logical_volumes(LVS_FIXTURE).expect("lvs"))),
        ] {
            let real: serde_json::Value = serde_json::from_str(fixture).expect("JSON");
            let simulated: serde_json::Value = serde_json::from_str(&reprint).expect("JSON");
            assert_eq!(simulated, real);
        }
    }

    #[test]
    fn a_changed_shape_names_the_tool_and_the_field() {
        let error = parse_physical_volumes(&PVS_FIXTURE.replacen("\"pv_uuid\"", "\"pv_id\"", 1)).expect_err("renamed");
        assert_eq!(error.tool, "pvs --reportformat json");
        assert_eq!(error.field, "report[0].pv[0].pv_uuid", "{error}");
        let error = parse_logical_volumes(&LVS_FIXTURE.replacen("\"lv_size\":\"", "\"lv_size\":\"x", 1))
            .expect_err("not a number");
        assert_eq!(error.field, "report[0].lv[0].lv_size", "{error}");
        assert!(error.to_string().contains("is not a number of bytes"), "{error}");
        assert!(parse_logical_volumes("").is_err(), "empty output is no empty list");
        assert!(parse_logical_volumes(r#"{"report": []}"#).is_err(), "a report without its section");
    }
}
