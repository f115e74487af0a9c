//! disko's `type = "table"` (its older partition table type, the only one with MBR tables): a list of
//! partitions placed with parted's `start`/`end`. MBR disks are written in this form, and both of its
//! formats (`msdos` and `gpt`) are read.

use serde_json::Value;

use super::{mbr_type, Disk, Partition, TableFormat};
use crate::disko::{ExportError, Object, Reader, Writer};
use crate::error::FieldPath;
use crate::size::{Size, MIB};

/// A position as parted reads it in `mkpart`: from the disk's start, from its end (`-1G`), or the end of
/// the disk (`100%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    At(u64),
    BeforeEnd(u64),
    End,
}

/// parted's units: `s` sectors (of 512 bytes here), `B`, SI units (`k`, `M`, `G`, `T`, with or without
/// `B`: parted reads `500M` as 500 MB) and IEC ones (`KiB`, `MiB`, ...), and `0%`/`100%`.
fn parted_position(text: &str) -> Option<Position> {
    let text = text.trim();
    match text {
        "0%" => return Some(Position::At(0)),
        "100%" | "-0" => return Some(Position::End),
        _ => {}
    }
    if let Some(rest) = text.strip_prefix('-') {
        return parted_bytes(rest).map(Position::BeforeEnd);
    }
    parted_bytes(text).map(Position::At)
}

fn parted_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit {
        "s" => 512,
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// True for an end written in bytes that is the last byte of a sector (511 past a 512-byte boundary).
fn is_last_byte(text: &str, bytes: u64) -> bool {
    text.trim().ends_with('B')
        && text.trim().trim_end_matches('B').bytes().all(|b| b.is_ascii_digit())
        && (bytes + 1).is_multiple_of(512)
}

/// A byte offset as parted takes it exactly: whole MiB where it is one, bytes otherwise.
fn parted_text(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{bytes}B")
    }
}

/// Reads disko's legacy `table` of a disk. Partitions follow each other as they do in a plan:
/// each one's size is its `end` less its `start`; an `extended` entry only says that the `logical` ones
/// after it are logical.
pub(crate) fn disk_from_disko(r: &mut Reader, device: String, content: &Object, path: &FieldPath) -> Option<Disk> {
    r.only(content, path, &["type", "format", "partitions", "device"]);
    let format = r.string(content, "format", path).unwrap_or_else(|| "gpt".into());
    let table = match format.as_str() {
        "gpt" => TableFormat::Gpt,
        "msdos" => TableFormat::Msdos,
        other => {
            r.refuse(&path.join("format"), format!("{other:?} is not a table format (gpt or msdos)"));
            return None;
        }
    };
    let parts_path = path.join("partitions");
    let list = match content.get("partitions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => {
            r.refuse(&parts_path, "is not a list");
            return None;
        }
    };
    let mut partitions = indexmap::IndexMap::new();
    let mut previous_end: Option<Position> = None;
    for (index, value) in list.iter().enumerate() {
        let path = parts_path.join(format!("[{index}]"));
        let object = r.object(value, &path)?;
        let known = ["part-type", "fs-type", "name", "start", "end", "flags", "bootable", "content", "_index"];
        r.only(object, &path, &known);
        let part_type = r.string(object, "part-type", &path).unwrap_or_else(|| "primary".into());
        let start_text = r.string(object, "start", &path).unwrap_or_else(|| "0%".into());
        let end_text = r.string(object, "end", &path).unwrap_or_else(|| "100%".into());
        let Some(start) = parted_position(&start_text) else {
            r.refuse(&path.join("start"), format!("{start_text:?} is not a position parted takes here"));
            continue;
        };
        let Some(end) = parted_position(&end_text) else {
            r.refuse(&path.join("end"), format!("{end_text:?} is not a position parted takes here"));
            continue;
        };
        if part_type == "extended" {
            if table != TableFormat::Msdos {
                r.refuse(&path.join("part-type"), "extended partitions exist only in msdos tables");
            }
            if object.get("content").is_some_and(|c| !c.is_null()) {
                r.refuse(&path.join("content"), "an extended partition holds logical partitions, not content");
            }
            continue;
        }
        let logical = match part_type.as_str() {
            "primary" => false,
            "logical" if table == TableFormat::Msdos => true,
            other => {
                r.refuse(&path.join("part-type"), format!("{other:?} is not a partition kind here"));
                continue;
            }
        };
        if let (Some(Position::At(before)), Position::At(here)) = (previous_end, start) {
            // A gap of more than the alignment (and a logical partition's boot record) is not kept.
            if here > before + 2 * MIB {
                r.warn(format!("{}: the gap before this partition is not kept", path.join("start")));
            }
        }
        previous_end = Some(end);
        let size = match (start, end) {
            (_, Position::End) => Size::Rest,
            (_, Position::BeforeEnd(bytes)) => Size::AllBut(bytes),
            // An end in bytes (not on a 512-byte boundary) is the byte the partition ends in, as parted
            // takes it (see `to_disko`).
            (Position::At(first), Position::At(last)) if last > first && is_last_byte(&end_text, last) => {
                Size::Bytes(last + 1 - first)
            }
            (Position::At(first), Position::At(last)) if last > first => Size::Bytes(last - first),
            _ => {
                r.refuse(&path.join("end"), format!("{end_text:?} does not lie after the start {start_text:?}"));
                continue;
            }
        };
        let content_value = object.get("content").filter(|c| !c.is_null());
        let content = content_value.and_then(|c| r.content(c, &path.join("content"), false));
        let mut kind = None;
        let mut bootable = r.flag(object, "bootable", &path);
        let mut attributes = Vec::new();
        for flag in r.strings(object, "flags", &path) {
            match flag.as_str() {
                "boot" if table == TableFormat::Msdos => bootable = true,
                "esp" | "boot" => kind = Some("esp".to_string()),
                "bios_grub" if table == TableFormat::Gpt => kind = Some("bios-boot".to_string()),
                "legacy_boot" if table == TableFormat::Gpt => attributes.push(2),
                "raid" => kind = Some("raid".to_string()),
                "lvm" => kind = Some("lvm".to_string()),
                "swap" => kind = Some("swap".to_string()),
                other => r.refuse(&path.join("flags"), format!("the flag {other:?} is not supported")),
            }
        }
        if table == TableFormat::Gpt && bootable {
            // parted's boot flag on a GPT makes the partition an EFI system partition: that of a vfat
            // filesystem is one; on anything else, the flag means nothing to Linux or GRUB.
            bootable = false;
            let vfat = matches!(&content, Some(super::super::Content::Filesystem(fs))
                if fs.format == super::super::filesystem::Format::Vfat);
            if vfat {
                kind = Some("esp".to_string());
            } else {
                r.warn(format!(
                    "{}: not carried over: it would make this an EFI system partition",
                    path.join("bootable")
                ));
            }
        }
        if r.string(object, "fs-type", &path).as_deref() == Some("linux-swap") && kind.is_none() {
            kind = Some("swap".to_string());
        }
        let kind = kind.or_else(|| Some(super::default_type(content.as_ref()).to_string()));
        let written_name = r.string(object, "name", &path);
        let key = written_name.clone().unwrap_or_else(|| format!("part{}", index + 1));
        // On a GPT, parted names the partition after `name`.
        let label = written_name.filter(|_| table == TableFormat::Gpt);
        let partition = Partition {
            number: None,
            keep: false,
            start: None,
            size,
            kind,
            label,
            uuid: None,
            attributes,
            bootable,
            logical,
            content,
        };
        if partitions.insert(key.clone(), partition).is_some() {
            r.refuse(&path.join("name"), format!("{key:?} names two partitions"));
        }
    }
    Some(Disk::from_disko(device, table, partitions))
}

/// Writes an MBR disk as disko's legacy `table`, with an `extended` entry before the logical partitions.
/// Positions are the plan's own placement, exactly (1 MiB aligned, 1 MiB before each logical partition for
/// its boot record), so the disk's size must be known.
pub(crate) fn to_disko(disk: &Disk, w: &mut Writer, disk_name: &str) -> Result<(), ExportError> {
    let path = FieldPath::root().join("disks").join(disk_name);
    let Some(size) = disk.size else {
        return Err(ExportError {
            path: path.join("size"),
            message: "an MBR table is written with exact positions: \
            the disk's size is needed"
                .into(),
        });
    };
    let (extents, extended) =
        disk.place(size).map_err(|error| ExportError { path: path.join("partitions"), message: error.to_string() })?;
    let sector = u64::from(disk.logical_sector_size);
    // parted takes an end in IEC units as exclusive (it steps back one sector) and one in bytes as the
    // byte the partition ends in.
    let span = |first: u64, last: u64| {
        let end = (last + 1) * sector;
        let end = if end.is_multiple_of(MIB) { parted_text(end) } else { format!("{}B", end - 1) };
        (parted_text(first * sector), end)
    };
    w.open(disk_name);
    if let Some(signature) = &disk.signature {
        // disko's table has no such field: parted gives a new table a signature of its own.
        w.line(&format!("# the MBR's disk signature is {signature}: disko's table cannot keep it"));
    }
    w.string("type", "disk");
    w.string("device", &disk.device);
    w.open("content");
    w.string("type", "table");
    w.string("format", "msdos");
    w.line("partitions = [");
    w.indent += 1;
    let first_logical = disk.partitions.values().position(|p| p.logical);
    for (index, ((part_name, part), extent)) in disk.partitions.iter().zip(extents).enumerate() {
        if let Some(extended) = extended.filter(|_| Some(index) == first_logical) {
            let (start, mut end) = span(extended.first_lba, extended.last_lba);
            // One the disk has already ends where it ends; nix-dabei's own ends with the last partition.
            match disk.partitions.values().last().map(|p| p.size).filter(|_| disk.extended.is_none()) {
                Some(Size::Rest) => end = "100%".into(),
                Some(Size::AllBut(bytes)) => end = format!("-{}", parted_text(bytes)),
                _ => {}
            }
            w.line("{");
            w.indent += 1;
            w.string("part-type", "extended");
            w.string("start", &start);
            w.string("end", &end);
            w.indent -= 1;
            w.line("}");
        }
        let (start, mut end) = span(extent.first_lba, extent.last_lba);
        // Ends relative to the disk's end stay so: the configuration fits a disk of another size.
        match part.size {
            Size::Rest => end = "100%".into(),
            Size::AllBut(bytes) => end = format!("-{}", parted_text(bytes)),
            Size::Bytes(_) => {}
        }
        w.line("{");
        w.indent += 1;
        w.string("name", part_name);
        w.string("part-type", if part.logical { "logical" } else { "primary" });
        w.string("start", &start);
        w.string("end", &end);
        if part.bootable {
            w.line("bootable = true;");
        }
        let flag = match part.kind.as_deref().and_then(mbr_type) {
            Some(0xEF) => Some("esp"),
            Some(0xFD) => Some("raid"),
            Some(0x8E) => Some("lvm"),
            _ => None,
        };
        if let Some(flag) = flag {
            w.list("flags", &[flag.to_string()]);
        }
        if let Some(content) = &part.content {
            w.content_of(&format!("{disk_name}/{part_name}"), content);
        }
        w.indent -= 1;
        w.line("}");
    }
    w.indent -= 1;
    w.line("];");
    w.close();
    w.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parted_units() {
        assert_eq!(parted_position("1M"), Some(Position::At(1_000_000)));
        assert_eq!(parted_position("1MiB"), Some(Position::At(MIB)));
        assert_eq!(parted_position("2048s"), Some(Position::At(MIB)));
        assert_eq!(parted_position("100%"), Some(Position::End));
        assert_eq!(parted_position("-1GiB"), Some(Position::BeforeEnd(1 << 30)));
        assert_eq!(parted_position("50%"), None);
    }
}
