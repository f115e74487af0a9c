//! MBR ("msdos") partition tables: writing a plan's table, with logical partitions chained through
//! extended boot records, and reading one back.
//!
//! Layout of a boot record (the MBR in sector 0, or an EBR): boot code up to byte 440 (kept as found, so
//! GRUB's boot image survives a rewrite), the disk signature at 440 (MBR only), four 16-byte entries from
//! 446, and 0x55 0xAA at 510. An entry is: status (0x80 = bootable), CHS start, type, CHS end, first LBA
//! and sector count (32-bit little endian). In an EBR, the first entry is the logical partition, relative
//! to the EBR, and the second points to the next EBR, relative to the extended partition's start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use layouts::gpt::{is_extended_mbr_type, Extent, GptPartition, MsdosTable};

use crate::error::DiskError;
use crate::table::TableEntry;

const ENTRIES: usize = 446;
const SIGNATURE: usize = 440;
/// The type an extended partition gets (util-linux's "Extended").
const EXTENDED_TYPE: u8 = 0x05;
/// Logical partitions an EBR chain is followed for, at most: a loop in a damaged chain ends here.
const MAX_LOGICAL: usize = 128;

/// An MBR table as read from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrState {
    /// The disk signature.
    pub signature: u32,
    /// The partitions, primary ones (1-4) then logical ones (5 on); `name` is empty, `type_guid` the type
    /// byte as two hex digits, `uuid` the `<signature>-<number>` form.
    pub entries: Vec<TableEntry>,
    /// The extended partition, where there is one, and its entry number.
    pub extended: Option<(u32, Extent)>,
    /// True when the chain of extended boot records ends in a sector that is not one.
    pub broken_chain: bool,
}

fn table_error(device: &str, message: impl Into<String>) -> DiskError {
    DiskError::Table { device: device.to_string(), message: message.into() }
}

/// The cylinder-head-sector form of an LBA with 255 heads and 63 sectors per track, or the "beyond
/// CHS" marker; only very old BIOSes read it, but fdisk warns when it disagrees with the LBA.
fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (255 * 63);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / 63) % 255;
    let sector = lba % 63 + 1;
    [head as u8, (sector as u8) | (((cylinder >> 2) & 0xC0) as u8), (cylinder & 0xFF) as u8]
}

fn put_entry(record: &mut [u8; 512], slot: usize, bootable: bool, kind: u8, first: u64, sectors: u64) {
    let at = ENTRIES + slot * 16;
    let entry = &mut record[at..at + 16];
    entry[0] = if bootable { 0x80 } else { 0 };
    entry[1..4].copy_from_slice(&chs(first));
    entry[4] = kind;
    entry[5..8].copy_from_slice(&chs(first + sectors - 1));
    entry[8..12].copy_from_slice(&(first as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

fn type_byte(device: &str, partition: &GptPartition) -> Result<u8, DiskError> {
    u8::from_str_radix(&partition.type_guid, 16).map_err(|_| {
        table_error(device, format!("partition {}: {:?} is not an MBR type", partition.number, partition.type_guid))
    })
}

fn write_record(file: &mut File, device: &str, offset: u64, record: &[u8; 512]) -> Result<(), DiskError> {
    file.seek(SeekFrom::Start(offset)).map_err(|e| DiskError::device(device, "seek", e))?;
    file.write_all(record).map_err(|e| DiskError::device(device, "write a boot record", e))
}

/// Writes the MBR (and the EBRs of logical partitions) holding exactly `partitions`, keeping the boot
/// code already in sector 0. The caller has checked the disk's size and sector size.
pub fn write_mbr(
    file: &mut File,
    device: &str,
    sector: u64,
    msdos: &MsdosTable,
    partitions: &[GptPartition],
) -> Result<(), DiskError> {
    let mut mbr = [0u8; 512];
    file.seek(SeekFrom::Start(0)).map_err(|e| DiskError::device(device, "seek", e))?;
    file.read_exact(&mut mbr).map_err(|e| DiskError::device(device, "read the MBR", e))?;
    mbr[SIGNATURE..SIGNATURE + 4].copy_from_slice(&msdos.signature.to_le_bytes());
    mbr[444] = 0;
    mbr[445] = 0;
    mbr[ENTRIES..510].fill(0);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let (primary, logical): (Vec<&GptPartition>, Vec<&GptPartition>) = partitions.iter().partition(|p| p.number <= 4);
    for (slot, partition) in primary.iter().enumerate() {
        let kind = type_byte(device, partition)?;
        put_entry(&mut mbr, slot, partition.bootable, kind, partition.extent.first_lba, partition.extent.sectors());
    }
    if let Some(extended) = msdos.extended {
        if primary.len() >= 4 {
            return Err(table_error(device, "no entry is left for the extended partition"));
        }
        put_entry(&mut mbr, primary.len(), false, EXTENDED_TYPE, extended.first_lba, extended.sectors());
        // Each logical partition's EBR sits one alignment unit before it (where the plan left room).
        let alignment = ((1u64 << 20) / sector).max(1);
        let records: Vec<u64> = logical.iter().map(|p| p.extent.first_lba - alignment).collect();
        for (index, partition) in logical.iter().enumerate() {
            let mut ebr = [0u8; 512];
            ebr[510] = 0x55;
            ebr[511] = 0xAA;
            let kind = type_byte(device, partition)?;
            let here = records[index];
            put_entry(
                &mut ebr,
                0,
                partition.bootable,
                kind,
                partition.extent.first_lba - here,
                partition.extent.sectors(),
            );
            if let (Some(next), Some(next_partition)) = (records.get(index + 1), logical.get(index + 1)) {
                let length = next_partition.extent.last_lba - next + 1;
                put_entry(&mut ebr, 1, false, EXTENDED_TYPE, next - extended.first_lba, length);
            }
            // CHS fields of EBR entries hold absolute positions; the LBA ones are relative.
            write_record(file, device, here * sector, &ebr)?;
        }
    } else if !logical.is_empty() {
        return Err(table_error(device, "logical partitions need an extended partition"));
    }
    write_record(file, device, 0, &mbr)
}

fn read_record(file: &mut File, device: &str, offset: u64) -> Result<[u8; 512], DiskError> {
    let mut record = [0u8; 512];
    file.seek(SeekFrom::Start(offset)).map_err(|e| DiskError::device(device, "seek", e))?;
    file.read_exact(&mut record).map_err(|e| DiskError::device(device, "read a boot record", e))?;
    Ok(record)
}

/// One entry of a boot record: (bootable, type, first LBA, sectors); `None` when empty.
fn entry(record: &[u8; 512], slot: usize) -> Option<(bool, u8, u64, u64)> {
    let at = ENTRIES + slot * 16;
    let e = &record[at..at + 16];
    let first = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
    let sectors = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
    (e[4] != 0 && sectors > 0).then_some((e[0] & 0x80 != 0, e[4], first, sectors))
}

fn table_entry(signature: u32, number: u32, bootable: bool, kind: u8, first: u64, sectors: u64) -> TableEntry {
    TableEntry {
        number,
        name: String::new(),
        type_guid: format!("{kind:02X}"),
        uuid: format!("{signature:08X}-{number:02X}"),
        first_lba: first,
        last_lba: first + sectors - 1,
        bootable,
        attributes: Vec::new(),
    }
}

/// Reads the MBR table of a device with `sector`-byte sectors: `None` when sector 0 holds none, or holds a
/// GPT's protective MBR. Errors only when the device cannot be read.
pub fn read_mbr(file: &mut File, device: &str, sector: u64) -> Result<Option<MbrState>, DiskError> {
    let mbr = read_record(file, device, 0)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Ok(None);
    }
    let primaries: Vec<Option<(bool, u8, u64, u64)>> = (0..4).map(|slot| entry(&mbr, slot)).collect();
    if primaries.iter().flatten().any(|(_, kind, _, _)| *kind == 0xEE) {
        return Ok(None);
    }
    // A boot sector of a filesystem (FAT, NTFS) also ends in 0x55 0xAA: entries whose status byte is
    // neither 0 nor 0x80 mean this is no partition table.
    if (0..4).any(|slot| !matches!(mbr[ENTRIES + slot * 16], 0x00 | 0x80)) {
        return Ok(None);
    }
    let signature = u32::from_le_bytes([mbr[440], mbr[441], mbr[442], mbr[443]]);
    let mut state = MbrState { signature, entries: Vec::new(), extended: None, broken_chain: false };
    for (slot, found) in primaries.iter().enumerate() {
        let Some((bootable, kind, first, sectors)) = *found else { continue };
        let number = slot as u32 + 1;
        if is_extended_mbr_type(kind) {
            state.extended = Some((number, Extent { first_lba: first, last_lba: first + sectors - 1 }));
        } else {
            state.entries.push(table_entry(signature, number, bootable, kind, first, sectors));
        }
    }
    if let Some((_, extended)) = state.extended {
        let mut here = extended.first_lba;
        for number in 5..5 + MAX_LOGICAL as u32 {
            let ebr = read_record(file, device, here * sector)?;
            if ebr[510] != 0x55 || ebr[511] != 0xAA {
                state.broken_chain = true;
                break;
            }
            if let Some((bootable, kind, first, sectors)) = entry(&ebr, 0) {
                state.entries.push(table_entry(signature, number, bootable, kind, here + first, sectors));
            }
            match entry(&ebr, 1) {
                Some((_, kind, next, _)) if is_extended_mbr_type(kind) => here = extended.first_lba + next,
                _ => break,
            }
        }
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_of_small_and_large_lbas() {
        assert_eq!(chs(0), [0, 1, 0]);
        // LBA 2048: cylinder 0, head 32, sector 33 (2048 = 32 * 63 + 32).
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(1 << 30), [0xFE, 0xFF, 0xFF]);
    }
}
