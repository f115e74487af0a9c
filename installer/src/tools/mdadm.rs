//! `mdadm --detail --export` (`layouts::nodes::mdadm::detail_command`): what an assembled array
//! reports, read into one typed value that the operations, adopt and the simulator share (the
//! simulator prints it with [`ArrayDetail::export`]).

use super::ToolOutputError;

/// An assembled array as `mdadm --detail --export` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayDetail {
    /// `MD_LEVEL`, such as `raid1`.
    pub level: String,
    /// `MD_DEVICES`: how many members the array has (present or not).
    pub devices: usize,
    /// `MD_METADATA`: the superblock format, such as `1.2`.
    pub metadata: String,
    /// `MD_UUID`, in mdadm's form (four groups of eight hex digits, colon-separated).
    pub uuid: String,
    /// `MD_DEVICE_*_DEV`: the members present, as mdadm names them, in the order of their roles
    /// (`MD_DEVICE_*_ROLE`; spares and faulty members last).
    pub members: Vec<String>,
}

const TOOL: &str = "mdadm --detail --export";

impl ArrayDetail {
    /// Reads mdadm's output; a field missing or not of its form is an error naming it, never a default.
    pub fn parse(text: &str) -> Result<ArrayDetail, ToolOutputError> {
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                .map(str::to_string)
                .ok_or_else(|| ToolOutputError::missing(TOOL, key))
        };
        let devices = value("MD_DEVICES")?;
        let devices = devices
            .parse()
            .map_err(|_| ToolOutputError::new(TOOL, "MD_DEVICES", format!("{devices:?} is not a number")))?;
        let mut members: Vec<(u32, String)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("MD_DEVICE_")?.split_once('='))
            .filter_map(|(key, device)| Some((key.strip_suffix("_DEV")?, device)))
            .map(|(key, device)| {
                let role = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("MD_DEVICE_{key}_ROLE=")))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(u32::MAX);
                (role, device.to_string())
            })
            .collect();
        members.sort();
        let members = members.into_iter().map(|(_, device)| device).collect();
        Ok(ArrayDetail {
            level: value("MD_LEVEL")?,
            devices,
            metadata: value("MD_METADATA")?,
            uuid: value("MD_UUID")?,
            members,
        })
    }

    /// The text mdadm prints for this array (named `name`): what the simulator answers.
    pub fn export(&self, name: &str) -> String {
        let mut text = format!(
            "MD_LEVEL={}\nMD_DEVICES={}\nMD_METADATA={}\nMD_UUID={}\nMD_DEVNAME={name}\nMD_NAME=any:{name}\n",
            self.level, self.devices, self.metadata, self.uuid
        );
        for (role, member) in self.members.iter().enumerate() {
            let key = member.trim_start_matches('/').replace('/', "_");
            text.push_str(&format!("MD_DEVICE_{key}_ROLE={role}\nMD_DEVICE_{key}_DEV={member}\n"));
        }
        text
    }

    /// Whether the array is the one with `uuid` (in mdadm's form; case does not matter).
    pub fn is(&self, uuid: &str) -> bool {
        self.uuid.eq_ignore_ascii_case(uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured in the VM (`vm-tests mdadm-raid1-boot-raid5`, its verify.sh), from mdadm 4.2.
    const RAID5: &str = include_str!("../../tests/fixtures/mdadm-detail-export-raid5.txt");
    const RAID1: &str = include_str!("../../tests/fixtures/mdadm-detail-export-raid1.txt");

    #[test]
    fn mdadms_own_output_is_read_field_for_field() {
        let detail = ArrayDetail::parse(RAID5).expect("the fixture reads");
        assert_eq!(detail.level, "raid5");
        assert_eq!(detail.devices, 3);
        assert_eq!(detail.metadata, "1.2");
        assert!(detail.is("8AC07A02:e5f0475c:925df918:fc8a3c4c"));
        assert_eq!(detail.members, ["/dev/vda3", "/dev/vdb3", "/dev/vdc3"], "by role");
        assert_eq!(ArrayDetail::parse(RAID1).expect("raid1").metadata, "1.0");
    }

    #[test]
    fn the_simulators_output_is_mdadms_line_for_line() {
        for fixture in [RAID5, RAID1] {
            let detail = ArrayDetail::parse(fixture).expect("the fixture reads");
            let name = fixture.lines().find_map(|l| l.strip_prefix("MD_DEVNAME=")).expect("a name");
            let mut real: Vec<&str> = fixture.lines().collect();
            let simulated = detail.export(name);
            let mut simulated: Vec<&str> = simulated.lines().collect();
            real.sort_unstable();
            simulated.sort_unstable();
            assert_eq!(simulated, real);
        }
    }

    #[test]
    fn a_changed_shape_names_the_tool_and_the_field() {
        let without_uuid: String =
            RAID5.lines().filter(|l| !l.starts_with("MD_UUID=")).map(|l| format!("{l}\n")).collect();
        let error = ArrayDetail::parse(&without_uuid).expect_err("no UUID");
        assert_eq!(error.to_string(), "mdadm --detail --export printed no MD_UUID");
        let error = ArrayDetail::parse(&RAID5.replace("MD_DEVICES=3", "MD_DEVICES=three")).expect_err("not a number");
        assert!(error.to_string().contains("MD_DEVICES") && error.to_string().contains("three"), "{error}");
        assert!(ArrayDetail::parse("").is_err(), "empty output is not an empty array");
    }
}
