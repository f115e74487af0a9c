//! Sizes as people write them ("512M", "1G", "2TiB", "100%", "rest") and as the planner uses them (bytes).

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// One mebibyte: the alignment of every partition.
pub const MIB: u64 = 1 << 20;

/// The size of a partition or a ZFS volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// An exact number of bytes.
    Bytes(u64),
    /// Whatever is left of the disk after every other partition.
    Rest,
    /// Up to this many bytes before the end of the disk ("-1G"); the partitions after it use that space.
    AllBut(u64),
}

/// A size string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a size (use bytes, or a number with K, M, G, T or P, \"rest\", or \"-N\" to end N before \
    the disk's end)"
)]
pub struct SizeError(pub String);

impl Size {
    /// The exact byte count, or `None` for [`Size::Rest`].
    pub fn bytes(self) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(b),
            Size::Rest | Size::AllBut(_) => None,
        }
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SizeError(text.to_string());
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("rest") || trimmed == "100%" || trimmed == "-0" {
            return Ok(Size::Rest);
        }
        if let Some(from_end) = trimmed.strip_prefix('-') {
            // "-0G" ends at the disk's end: the same as "rest", and written back as such.
            return match parse_bytes(from_end).ok_or_else(bad)? {
                0 => Ok(Size::Rest),
                bytes => Ok(Size::AllBut(bytes)),
            };
        }
        parse_bytes(trimmed).map(Size::Bytes).ok_or_else(bad)
    }
}

/// Parses "4096", "512M", "1G", "1.5GiB", "2T" into bytes. Units are binary (K = 1024), as sgdisk and
/// disko read them; a trailing "B" or "iB" is accepted.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let unit = unit.trim();
    let unit = unit.strip_suffix("iB").or_else(|| unit.strip_suffix('B').filter(|u| !u.is_empty())).unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        "P" | "p" => 50,
        _ => return None,
    };
    let multiplier = 1u64 << shift;
    match number.split_once('.') {
        None => number.parse::<u64>().ok()?.checked_mul(multiplier),
        Some((whole, fraction)) => {
            if fraction.contains('.') || shift == 0 || fraction.len() > 6 {
                return None;
            }
            let whole = whole.parse::<u64>().ok()?.checked_mul(multiplier)?;
            let scale = 10u64.pow(fraction.len() as u32);
            let fraction = fraction.parse::<u64>().ok()?;
            let part = (u128::from(fraction) * u128::from(multiplier) / u128::from(scale)) as u64;
            whole.checked_add(part)
        }
    }
}

/// Formats bytes with the largest binary unit that keeps it exact ("1G", "512M", "1536K"), as plans are
/// written.
pub fn format_exact(bytes: u64) -> String {
    const UNITS: [(&str, u32); 5] = [("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)];
    for (unit, shift) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Formats bytes for people: "20.0 GiB", "512 MiB", "3 B".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Bytes(b) => f.write_str(&format_exact(*b)),
            Size::Rest => f.write_str("rest"),
            Size::AllBut(b) => write!(f, "-{}", format_exact(*b)),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512M\", \"1G\", \"rest\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size::Bytes).map_err(|_| E::custom(SizeError(v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_people_write() {
        assert_eq!("512M".parse(), Ok(Size::Bytes(512 * MIB)));
        assert_eq!("1G".parse(), Ok(Size::Bytes(1 << 30)));
        assert_eq!("1GiB".parse(), Ok(Size::Bytes(1 << 30)));
        assert_eq!("2T".parse(), Ok(Size::Bytes(2 << 40)));
        assert_eq!("1.5G".parse(), Ok(Size::Bytes(3 << 29)));
        assert_eq!("4096".parse(), Ok(Size::Bytes(4096)));
        assert_eq!("100%".parse(), Ok(Size::Rest));
        assert_eq!("rest".parse(), Ok(Size::Rest));
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        assert_eq!("-1G".parse(), Ok(Size::AllBut(1 << 30)));
        assert_eq!("-0".parse(), Ok(Size::Rest));
        for bad in ["12X", "", "G", "--1G", "1..5G", ".5G", "1.5", "99999999999P", "1 0G"] {
            assert_eq!(bad.parse::<Size>(), Err(SizeError(bad.to_string())), "{bad}");
        }
        assert_eq!(
            SizeError("12X".into()).to_string(),
            "\"12X\" is not a size (use bytes, or a number with K, M, G, T or P, \"rest\", or \"-N\" to end N \
                before the disk's end)"
        );
    }

    #[test]
    fn formats_round_trip() {
        for text in ["512M", "1G", "3T", "1536K", "1000", "-2G"] {
            let size: Size = text.parse().expect("size");
            assert_eq!(size.to_string(), text);
        }
        assert_eq!(human(20 << 30), "20 GiB");
        assert_eq!(human(1536 * MIB), "1.5 GiB");
    }
}
