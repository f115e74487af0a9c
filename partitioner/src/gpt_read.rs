//! Reading a GPT copy defensively. Every field of a header whose checksum is right is still the disk's
//! word, not a fact: a header may declare entries of any size and any number of them. The UEFI
//! specification allows entries of 128 × 2ⁿ bytes; this reads them all (their first 128 bytes hold the
//! standard fields) and refuses, with the reason, what no real table has: other entry sizes, an entry
//! array outside the disk or larger than [`ARRAY_LIMIT`]. Nothing here allocates more than the disk's
//! array can hold, and nothing panics on any input (`fuzz/fuzz_targets/gpt_image.rs`).

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::table::{guid_text, TableEntry};

/// The largest entry array read: 8 MiB (65,536 entries of 128 bytes; sgdisk makes 128, and allows a
/// few thousand). A header that declares more is refused, not read.
pub const ARRAY_LIMIT: u64 = 8 << 20;

/// What one GPT copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptCopy {
    /// No GPT header there, or a damaged one (signature, size or a checksum wrong, or it names another
    /// sector as its own).
    Absent,
    /// A header with the right checksum that declares what cannot be read; why.
    Unreadable(String),
    /// The used entries, numbered from 1 by their place in the array.
    Read(Vec<TableEntry>),
}

/// CRC-32 (IEEE 802.3, reflected), as GPT headers and entry arrays carry it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Reads exactly `buffer.len()` bytes at `offset`; a short read (past the device's end) is `Ok(false)`.
fn read_at(source: &mut (impl Read + Seek), offset: u64, buffer: &mut [u8]) -> io::Result<bool> {
    source.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

/// A GPT copy's header sector, where its entry array lies, its entry size, and the array.
struct RawCopy {
    header: Vec<u8>,
    array_lba: u64,
    entry_size: u64,
    array: Vec<u8>,
}

impl RawCopy {
    /// Each used entry (its type GUID not zero) with its number, from 1.
    fn used_entries(&self) -> impl Iterator<Item = (u32, &[u8])> {
        let entries = self.array.chunks_exact(self.entry_size as usize).enumerate();
        entries.filter(|(_, raw)| raw[0..16] != [0u8; 16]).map(|(index, raw)| (index as u32 + 1, raw))
    }
}

/// A GPT name field (UTF-16LE up to the first NUL) as text; what text cannot hold reads as U+FFFD.
pub fn name_text(field: &[u8]) -> String {
    let units: Vec<u16> =
        field.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|unit| *unit != 0).collect();
    String::from_utf16_lossy(&units)
}

fn guid_at(raw: &[u8], at: usize) -> String {
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&raw[at..at + 16]);
    guid_text(&guid)
}

/// The header at `lba` and its entry array, checked before anything is trusted: `Err` with the copy's
/// state where it is absent, damaged or unreadable.
fn read_raw(
    source: &mut (impl Read + Seek),
    sector: u64,
    lba: u64,
    disk_sectors: u64,
) -> io::Result<Result<RawCopy, GptCopy>> {
    if !(512..=65536).contains(&sector) || lba >= disk_sectors {
        return Ok(Err(GptCopy::Absent));
    }
    let mut header = vec![0u8; sector as usize];
    if !read_at(source, lba * sector, &mut header)? || &header[0..8] != b"EFI PART" {
        return Ok(Err(GptCopy::Absent));
    }
    let header_size = u32_at(&header, 12) as usize;
    if !(92..=header.len()).contains(&header_size) {
        return Ok(Err(GptCopy::Absent));
    }
    let mut checked = header[..header_size].to_vec();
    checked[16..20].fill(0);
    if crc32(&checked) != u32_at(&header, 16) || u64_at(&header, 24) != lba {
        return Ok(Err(GptCopy::Absent));
    }
    let (array_lba, count, entry_size) =
        (u64_at(&header, 72), u64::from(u32_at(&header, 80)), u64::from(u32_at(&header, 84)));
    let unreadable = |why: String| Ok(Err(GptCopy::Unreadable(format!("the GPT header at sector {lba} {why}"))));
    if entry_size < 128 || !entry_size.is_power_of_two() || entry_size > sector {
        return unreadable(format!(
            "declares entries of {entry_size} bytes (a GPT's are 128 bytes, or 128 × 2ⁿ up to the sector size)"
        ));
    }
    let bytes = count * entry_size;
    if bytes > ARRAY_LIMIT {
        return unreadable(format!("declares {count} entries ({bytes} bytes), more than any table holds"));
    }
    let array_sectors = bytes.div_ceil(sector);
    if array_lba == 0 || array_lba == lba || array_lba.saturating_add(array_sectors) > disk_sectors {
        return unreadable(format!(
            "puts its {array_sectors}-sector entry array at sector {array_lba}, outside the disk"
        ));
    }
    let mut array = vec![0u8; bytes as usize];
    if !read_at(source, array_lba * sector, &mut array)? {
        return unreadable("has an entry array past the disk's end".to_string());
    }
    if crc32(&array) != u32_at(&header, 88) {
        return Ok(Err(GptCopy::Absent));
    }
    Ok(Ok(RawCopy { header, array_lba, entry_size, array }))
}

/// Reads the GPT copy whose header is at `lba` of a device of `disk_sectors` sectors of `sector` bytes.
/// Errors only when the device cannot be read.
pub fn read_copy(source: &mut (impl Read + Seek), sector: u64, lba: u64, disk_sectors: u64) -> io::Result<GptCopy> {
    let copy = match read_raw(source, sector, lba, disk_sectors)? {
        Ok(copy) => copy,
        Err(state) => return Ok(state),
    };
    let entries = copy.used_entries().map(|(number, raw)| {
        let attribute_bits = u64_at(raw, 48);
        TableEntry {
            number,
            name: name_text(&raw[56..128]),
            type_guid: guid_at(raw, 0),
            uuid: guid_at(raw, 16),
            first_lba: u64_at(raw, 32),
            last_lba: u64_at(raw, 40),
            bootable: false,
            attributes: (0..64).filter(|bit| attribute_bits & (1u64 << bit) != 0).collect(),
        }
    });
    Ok(GptCopy::Read(entries.collect()))
}

/// A used entry's identity and its name exactly as the disk holds it (72 bytes of UTF-16LE, which may
/// hold what no Rust string can, such as an unpaired surrogate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawName {
    /// The entry's number, from 1.
    pub number: u32,
    /// Its partition UUID, as [`TableEntry::uuid`] writes it.
    pub uuid: String,
    /// First and last sector.
    pub extent: (u64, u64),
    /// The name field.
    pub bytes: [u8; 72],
}

/// The names of the used entries of the primary copy (else the backup), byte for byte.
pub fn raw_names(source: &mut (impl Read + Seek), sector: u64, disk_sectors: u64) -> io::Result<Vec<RawName>> {
    for lba in [1, disk_sectors.saturating_sub(1)] {
        let Ok(copy) = read_raw(source, sector, lba, disk_sectors)? else { continue };
        let names = copy.used_entries().map(|(number, raw)| {
            let mut bytes = [0u8; 72];
            bytes.copy_from_slice(&raw[56..128]);
            RawName { number, uuid: guid_at(raw, 16), extent: (u64_at(raw, 32), u64_at(raw, 40)), bytes }
        });
        return Ok(names.collect());
    }
    Ok(Vec::new())
}

/// Writes each name into its entry of both GPT copies and seals both headers again: a kept partition's
/// name goes back byte for byte, where writing it as text would have replaced what text cannot hold.
pub fn write_raw_names(
    device: &mut (impl Read + Write + Seek),
    sector: u64,
    disk_sectors: u64,
    names: &[(u32, [u8; 72])],
) -> io::Result<()> {
    for lba in [1, disk_sectors.saturating_sub(1)] {
        let Ok(RawCopy { mut header, array_lba, entry_size, mut array }) = read_raw(device, sector, lba, disk_sectors)?
        else {
            continue;
        };
        for (number, bytes) in names {
            let at = (u64::from(number.saturating_sub(1)) * entry_size) as usize + 56;
            if let Some(field) = array.get_mut(at..at + 72) {
                field.copy_from_slice(bytes);
            }
        }
        header[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let header_size = u32_at(&header, 12) as usize;
        header[16..20].fill(0);
        let crc = crc32(&header[..header_size]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        device.seek(SeekFrom::Start(array_lba * sector))?;
        device.write_all(&array)?;
        device.seek(SeekFrom::Start(lba * sector))?;
        device.write_all(&header)?;
    }
    Ok(())
}

/// Whether a disk's first sector holds a hybrid MBR: a GPT's protective entry (0xEE) beside entries of
/// other types, which some systems boot from. Writing a new GPT keeps it rather than replacing it with
/// a plain protective MBR.
pub fn is_hybrid_mbr(sector0: &[u8]) -> bool {
    if sector0.len() < 512 || sector0[510] != 0x55 || sector0[511] != 0xAA {
        return false;
    }
    let types: Vec<u8> = (0..4).map(|i| sector0[446 + i * 16 + 4]).collect();
    types.contains(&0xEE) && types.iter().any(|t| *t != 0 && *t != 0xEE)
}

/// Both copies of a disk image in memory (for the fuzzer, and tests): the primary at sector 1, the
/// backup at the last sector.
pub fn read_image(image: &[u8], sector: u64) -> (GptCopy, GptCopy) {
    let sectors = image.len() as u64 / sector.max(1);
    let mut cursor = io::Cursor::new(image);
    let primary = read_copy(&mut cursor, sector, 1, sectors).unwrap_or(GptCopy::Absent);
    let backup = match sectors.checked_sub(1) {
        Some(last) => read_copy(&mut cursor, sector, last, sectors).unwrap_or(GptCopy::Absent),
        None => GptCopy::Absent,
    };
    (primary, backup)
}

/// Writes a header's two checksums for what it declares, in an image in memory: the entry array's (as
/// far as the image holds it) and then the header's own. For tests and the fuzzer, which would never get
/// past the checksums otherwise.
pub fn seal_header(image: &mut [u8], sector: u64, lba: u64) {
    let start = (lba * sector) as usize;
    if start + 92 > image.len() {
        return;
    }
    let header_size = (u32_at(image, start + 12) as usize).clamp(92, sector as usize).min(image.len() - start);
    let (array_lba, count, entry_size) =
        (u64_at(image, start + 72), u64::from(u32_at(image, start + 80)), u64::from(u32_at(image, start + 84)));
    let array_start = array_lba.saturating_mul(sector).min(image.len() as u64) as usize;
    let array_end =
        array_start.saturating_add(count.saturating_mul(entry_size).min(ARRAY_LIMIT) as usize).min(image.len());
    let array_crc = crc32(&image[array_start..array_end]);
    image[start + 88..start + 92].copy_from_slice(&array_crc.to_le_bytes());
    image[start + 16..start + 20].fill(0);
    let header_crc = crc32(&image[start..start + header_size]);
    image[start + 16..start + 20].copy_from_slice(&header_crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTOR: u64 = 512;

    /// A 1 MiB image with a GPT of one partition in both copies, as sgdisk lays it out.
    fn image() -> Vec<u8> {
        let sectors = 2048u64;
        let mut image = vec![0u8; (sectors * SECTOR) as usize];
        for (lba, array_lba) in [(1u64, 2u64), (sectors - 1, sectors - 33)] {
            let h = (lba * SECTOR) as usize;
            image[h..h + 8].copy_from_slice(b"EFI PART");
            image[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            image[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
            image[h + 24..h + 32].copy_from_slice(&lba.to_le_bytes());
            image[h + 72..h + 80].copy_from_slice(&array_lba.to_le_bytes());
            image[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
            image[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
            let e = (array_lba * SECTOR) as usize;
            image[e] = 0xAF; // a type GUID that is not zero
            image[e + 32..e + 40].copy_from_slice(&34u64.to_le_bytes());
            image[e + 40..e + 48].copy_from_slice(&1000u64.to_le_bytes());
            image[e + 56] = b'r';
            seal_header(&mut image, SECTOR, lba);
        }
        image
    }

    fn set_u32(image: &mut [u8], at: u64, value: u32) {
        image[at as usize..at as usize + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn a_plain_table_reads_the_same_in_both_copies() {
        let (primary, backup) = read_image(&image(), SECTOR);
        let GptCopy::Read(entries) = &primary else { panic!("{primary:?}") };
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].number, entries[0].first_lba, entries[0].last_lba), (1, 34, 1000));
        assert_eq!(entries[0].name, "r");
        assert_eq!(primary, backup);
        // CRC-32 of "123456789", the algorithm's check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// The crash of issue 36: a valid backup header declaring 64 entries of 256 bytes is read (it is
    /// legal), one declaring 0xFFFFFFFF entries or 100-byte entries is refused with the reason, and
    /// nothing is allocated for what the disk cannot hold.
    #[test]
    fn crafted_headers_with_right_checksums_are_read_or_refused_never_trusted() {
        let last = 2047 * SECTOR;
        let mut wide = image();
        set_u32(&mut wide, last + 80, 64);
        set_u32(&mut wide, last + 84, 256);
        seal_header(&mut wide, SECTOR, 2047);
        let (_, backup) = read_image(&wide, SECTOR);
        let GptCopy::Read(entries) = &backup else { panic!("{backup:?}") };
        assert_eq!(entries.iter().map(|e| e.number).collect::<Vec<_>>(), [1], "the first 128 bytes of each entry");

        for (count, size, reason) in [
            (0xFFFF_FFFFu32, 128u32, "entries"),
            (128, 100, "entries of 100 bytes"),
            (128, 1024, "entries of 1024 bytes"),
            (65, 256, "outside the disk"),
        ] {
            let mut crafted = image();
            set_u32(&mut crafted, last + 80, count);
            set_u32(&mut crafted, last + 84, size);
            if reason == "outside the disk" {
                crafted[(last + 72) as usize..(last + 80) as usize].copy_from_slice(&2040u64.to_le_bytes());
            }
            seal_header(&mut crafted, SECTOR, 2047);
            let (primary, backup) = read_image(&crafted, SECTOR);
            assert!(matches!(primary, GptCopy::Read(_)), "the primary is untouched");
            match backup {
                GptCopy::Unreadable(why) => assert!(why.contains(reason), "{count} x {size}: {why}"),
                other => panic!("{count} x {size}: {other:?}"),
            }
        }
        // A wrong checksum is a damaged copy, as before.
        let mut damaged = image();
        damaged[(last + 100) as usize] ^= 1;
        set_u32(&mut damaged, last + 80, 64);
        assert_eq!(read_image(&damaged, SECTOR).1, GptCopy::Absent);
    }
}
