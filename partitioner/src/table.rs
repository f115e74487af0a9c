//! Writing a plan's GPT and making the kernel see it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use gptman::{GPTPartitionEntry, GPT};
use layouts::gpt::MsdosTable;
use layouts::steps::GptPartition;

use crate::mbr::MbrState;

use crate::error::DiskError;
use crate::ioctl;

/// Bytes read at once from a disk's table area: a whole GPT entry array (128 entries of 128 bytes).
const TABLE_READ_WINDOW: usize = 64 * 1024;

/// A reader for gptman, which seeks to each of the 128 entries and reads it on its own: it serves seeks
/// and reads inside one window read at once, so that a GPT copy costs a read or two, not 256 system calls
/// (each about a millisecond on an emulated machine). std's `BufReader` drops its buffer on every seek.
struct WindowReader {
    file: File,
    /// Where the next read starts.
    position: u64,
    /// The window's first byte on the device, and its bytes.
    start: u64,
    bytes: Vec<u8>,
}

impl WindowReader {
    fn new(file: File) -> Self {
        WindowReader { file, position: 0, start: 0, bytes: Vec::new() }
    }
}

impl Read for WindowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let inside = self.position >= self.start && self.position < self.start + self.bytes.len() as u64;
        if !inside {
            self.file.seek(SeekFrom::Start(self.position))?;
            self.bytes.resize(TABLE_READ_WINDOW, 0);
            let mut filled = 0;
            while filled < self.bytes.len() {
                match self.file.read(&mut self.bytes[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            self.bytes.truncate(filled);
            self.start = self.position;
            if filled == 0 {
                return Ok(0);
            }
        }
        let offset = (self.position - self.start) as usize;
        let count = buf.len().min(self.bytes.len() - offset);
        buf[..count].copy_from_slice(&self.bytes[offset..offset + count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for WindowReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.position = match to {
            SeekFrom::Start(offset) => offset,
            SeekFrom::Current(delta) => {
                self.position.checked_add_signed(delta).ok_or(std::io::ErrorKind::InvalidInput)?
            }
            SeekFrom::End(_) => self.file.seek(to)?,
        };
        Ok(self.position)
    }
}

/// How long to wait for partition device nodes (and udev's links) to appear.
pub const PARTITION_WAIT: Duration = Duration::from_secs(30);

/// A GUID written as text, in the mixed-endian byte order GPT stores.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
    }
    bytes[0..4].reverse();
    bytes[4..6].reverse();
    bytes[6..8].reverse();
    Some(bytes)
}

/// The text form of a GUID stored in GPT byte order (upper case).
pub fn guid_text(bytes: &[u8; 16]) -> String {
    let mut b = *bytes;
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn table_error(device: &str, message: impl Into<String>) -> DiskError {
    DiskError::Table { device: device.to_string(), message: message.into() }
}

fn random_guid() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes[7] = (bytes[7] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

/// A partition as read back from a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Number.
    pub number: u32,
    /// GPT name.
    pub name: String,
    /// Type GUID, upper case.
    pub type_guid: String,
    /// Partition UUID, upper case.
    pub uuid: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector.
    pub last_lba: u64,
    /// MBR only: the boot flag.
    pub bootable: bool,
    /// GPT only: the attribute bits set, from 0.
    pub attributes: Vec<u32>,
}

/// Writes a protective MBR and a GPT holding exactly `partitions` (or, with `msdos`, an MBR table), after
/// checking the disk still has the planned size and sector size, then makes the kernel see the partitions
/// and waits for their nodes.
pub fn write_partition_table(
    device: &str,
    logical_sector_size: u32,
    disk_size: u64,
    partitions: &[GptPartition],
    msdos: Option<&MsdosTable>,
) -> Result<(), DiskError> {
    let mut file =
        OpenOptions::new().read(true).write(true).open(device).map_err(|e| DiskError::device(device, "open", e))?;
    let size = ioctl::size_bytes(&file)
        .or_else(|_| file.metadata().map(|m| m.len()))
        .map_err(|e| DiskError::device(device, "read size", e))?;
    if size != disk_size {
        return Err(table_error(device, format!("the disk has {size} bytes, the plan was made for {disk_size}")));
    }
    let sector = ioctl::logical_sector_size(&file).unwrap_or(512);
    if sector != logical_sector_size {
        return Err(table_error(
            device,
            format!("the disk has {sector}-byte sectors, the plan was made for {logical_sector_size}"),
        ));
    }
    let sector = u64::from(sector);
    if let Some(msdos) = msdos {
        crate::mbr::write_mbr(&mut file, device, sector, msdos, partitions)?;
        file.sync_all().map_err(|e| DiskError::device(device, "flush", e))?;
        announce_partitions(device, &file, sector, partitions)?;
        return wait_for_nodes(device, partitions.iter().map(|p| p.device.as_str()), PARTITION_WAIT);
    }
    // What a kept partition must keep, read before anything is written: its name byte for byte, and a
    // hybrid MBR (a protective entry beside others, which some systems boot from).
    let disk_sectors = size / sector;
    let old_names = crate::gpt_read::raw_names(&mut file, sector, disk_sectors)
        .map_err(|e| DiskError::device(device, "read the GPT's names", e))?;
    let mut sector0 = vec![0u8; 512];
    file.seek(SeekFrom::Start(0)).map_err(|e| DiskError::device(device, "seek", e))?;
    file.read_exact(&mut sector0).map_err(|e| DiskError::device(device, "read the MBR", e))?;
    let hybrid = crate::gpt_read::is_hybrid_mbr(&sector0);
    let mut gpt = GPT::new_from(&mut file, sector, random_guid()).map_err(|e| table_error(device, e.to_string()))?;
    gpt.align = (1 << 20) / sector;
    for partition in partitions {
        let type_guid = guid_bytes(&partition.type_guid).ok_or_else(|| {
            table_error(device, format!("partition {}: {:?} is not a GUID", partition.number, partition.type_guid))
        })?;
        let uuid = guid_bytes(&partition.uuid).ok_or_else(|| {
            table_error(device, format!("partition {}: {:?} is not a UUID", partition.number, partition.uuid))
        })?;
        gpt[partition.number] = GPTPartitionEntry {
            partition_type_guid: type_guid,
            unique_partition_guid: uuid,
            starting_lba: partition.extent.first_lba,
            ending_lba: partition.extent.last_lba,
            attribute_bits: partition
                .attributes
                .iter()
                .filter(|bit| **bit < 64)
                .fold(0, |bits, bit| bits | (1u64 << bit)),
            partition_name: partition.name.as_str().into(),
        };
    }
    gpt.write_into(&mut file).map_err(|e| table_error(device, e.to_string()))?;
    // A kept entry (same number, UUID and place, and the name the plan has is how it reads) gets its old
    // name's bytes back: gptman writes names as text, which loses an unpaired UTF-16 surrogate.
    let kept: Vec<(u32, [u8; 72])> = partitions
        .iter()
        .filter_map(|p| {
            let old = old_names.iter().find(|o| {
                o.number == p.number
                    && o.uuid.eq_ignore_ascii_case(&p.uuid)
                    && o.extent == (p.extent.first_lba, p.extent.last_lba)
            })?;
            (crate::gpt_read::name_text(&old.bytes) == p.name).then_some((p.number, old.bytes))
        })
        .collect();
    if !kept.is_empty() {
        crate::gpt_read::write_raw_names(&mut file, sector, disk_sectors, &kept)
            .map_err(|e| DiskError::device(device, "write kept partitions' names", e))?;
    }
    if !hybrid {
        GPT::write_protective_mbr_into(&mut file, sector).map_err(|e| table_error(device, e.to_string()))?;
    }
    file.sync_all().map_err(|e| DiskError::device(device, "flush", e))?;
    announce_partitions(device, &file, sector, partitions)?;
    wait_for_nodes(device, partitions.iter().map(|p| p.device.as_str()), PARTITION_WAIT)
}

/// The size in bytes and the logical sector size of a block device (an image file: its length, 512).
pub fn device_geometry(device: &str) -> Result<(u64, u32), DiskError> {
    let file = File::open(device).map_err(|e| DiskError::device(device, "open", e))?;
    let size = ioctl::size_bytes(&file)
        .or_else(|_| file.metadata().map(|m| m.len()))
        .map_err(|e| DiskError::device(device, "read size", e))?;
    Ok((size, ioctl::logical_sector_size(&file).unwrap_or(512)))
}

/// Reads the GPT of a device (its primary copy, else its backup); `None` when it has none.
pub fn read_partition_table(device: &str) -> Result<Option<Vec<TableEntry>>, DiskError> {
    let (_, sector) = device_geometry(device)?;
    let state = read_table_state(device, u64::from(sector))?;
    Ok(state.primary.or(state.backup))
}

/// A disk's partition table as it stands: each GPT copy read on its own, the protective MBR, and the
/// partitions the kernel has. "Done" for a planned table needs all four to agree with the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    /// The primary GPT's used entries, or `None` when it is missing or damaged.
    pub primary: Option<Vec<TableEntry>>,
    /// The backup GPT's used entries (at the disk's end), or `None` when it is missing or damaged.
    pub backup: Option<Vec<TableEntry>>,
    /// Whether sector 0 holds a protective MBR (one partition of type 0xEE), which firmware and the
    /// kernel need to take the disk for a GPT one.
    pub protective_mbr: bool,
    /// The MBR table in sector 0, where it holds one that is not a GPT's protective MBR.
    pub mbr: Option<MbrState>,
    /// The partitions the kernel knows now, as (number, first byte, bytes); `None` for a device that is
    /// not a block device (an image file).
    pub kernel: Option<Vec<KernelPartition>>,
    /// Why a GPT copy with the right checksums could not be read (it declares entries of another size,
    /// or an entry array outside the disk): such a copy counts as missing, and says why.
    pub unreadable: Vec<String>,
}

/// A partition as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPartition {
    /// Partition number.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

impl TableState {
    /// True when neither GPT copy nor an MBR table is there: the disk has no table of its own.
    pub fn is_blank(&self) -> bool {
        self.primary.is_none() && self.backup.is_none() && self.mbr.is_none()
    }
}

/// Reads one GPT copy whose header is at `lba`, defensively ([`crate::gpt_read`]): `None` when it is
/// absent, damaged (a bad signature or checksum) or declares what cannot be read (which goes into
/// `unreadable`, with the reason); an error only when the device cannot be read.
fn read_copy(
    file: &mut (impl Read + Seek),
    device: &str,
    sector: u64,
    lba: u64,
    disk_sectors: u64,
    unreadable: &mut Vec<String>,
) -> Result<Option<Vec<TableEntry>>, DiskError> {
    match crate::gpt_read::read_copy(file, sector, lba, disk_sectors) {
        Ok(crate::gpt_read::GptCopy::Read(entries)) => Ok(Some(entries)),
        Ok(crate::gpt_read::GptCopy::Absent) => Ok(None),
        Ok(crate::gpt_read::GptCopy::Unreadable(why)) => {
            unreadable.push(why);
            Ok(None)
        }
        Err(error) => Err(DiskError::device(device, "read a GPT copy", error)),
    }
}

/// Reads the state of a disk's table with `sector`-byte sectors. Errors only when the device cannot be
/// read; a missing or damaged copy is reported as such.
pub fn read_table_state(device: &str, sector: u64) -> Result<TableState, DiskError> {
    let file = File::open(device).map_err(|e| DiskError::device(device, "open", e))?;
    let size = ioctl::size_bytes(&file)
        .or_else(|_| file.metadata().map(|m| m.len()))
        .map_err(|e| DiskError::device(device, "read size", e))?;
    let last = (size / sector).checked_sub(1).ok_or_else(|| table_error(device, "the disk is empty".to_string()))?;
    let mut window = WindowReader::new(file);
    let mut unreadable = Vec::new();
    let primary = read_copy(&mut window, device, sector, 1, last + 1, &mut unreadable)?;
    let backup = read_copy(&mut window, device, sector, last, last + 1, &mut unreadable)?;
    let mut file = window.file;
    let mut mbr = [0u8; 512];
    file.seek(SeekFrom::Start(0)).map_err(|e| DiskError::device(device, "seek", e))?;
    file.read_exact(&mut mbr).map_err(|e| DiskError::device(device, "read the MBR", e))?;
    // The boot signature, and an MBR partition of type 0xEE (GPT protective; the first one, or one of a
    // hybrid MBR's).
    let protective_mbr = mbr[510] == 0x55 && mbr[511] == 0xAA && (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE);
    let mbr = crate::mbr::read_mbr(&mut file, device, sector)?;
    let is_block = std::os::unix::fs::FileTypeExt::is_block_device(
        &fs::metadata(device).map_err(|e| DiskError::device(device, "stat", e))?.file_type(),
    );
    let kernel = if is_block { Some(kernel_partition_extents(device)?) } else { None };
    Ok(TableState { primary, backup, protective_mbr, mbr, kernel, unreadable })
}

/// The partitions the kernel knows for a disk, from sysfs (start and size count 512-byte units there).
fn kernel_partition_extents(device: &str) -> Result<Vec<KernelPartition>, DiskError> {
    let disk_name = fs::canonicalize(device)
        .map_err(|e| DiskError::device(device, "resolve", e))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/sys/class/block").join(&disk_name);
    let read = |path: &Path| -> Result<u64, DiskError> {
        let text = fs::read_to_string(path).map_err(|source| DiskError::Read { path: path.to_path_buf(), source })?;
        text.trim().parse().map_err(|_| table_error(device, format!("{} holds {text:?}", path.display())))
    };
    let mut found = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|source| DiskError::Read { path: dir.clone(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.join("partition").exists() {
            continue;
        }
        found.push(KernelPartition {
            number: read(&path.join("partition"))? as u32,
            start: read(&path.join("start"))? * 512,
            size: read(&path.join("size"))? * 512,
        });
    }
    found.sort_by_key(|p| p.number);
    Ok(found)
}

/// Makes the kernel see the partitions just written: BLKRRPART, or where the kernel will not scan this
/// device (loop devices without partition scanning) or a partition is in use (a kept one, mounted),
/// BLKPG deletes and adds, partition by partition. A partition the kernel already has where the table
/// puts it is left alone.
pub fn announce_partitions(
    device: &str,
    file: &File,
    sector: u64,
    partitions: &[GptPartition],
) -> Result<(), DiskError> {
    if ioctl::reread_partitions(file).is_ok() {
        return Ok(());
    }
    let place = |p: &GptPartition| (p.number, p.extent.first_lba * sector, p.extent.sectors() * sector);
    let kernel = kernel_partition_extents(device)?;
    let unchanged = |k: &KernelPartition| partitions.iter().any(|p| place(p) == (k.number, k.start, k.size));
    // A partition grown (or shrunk) from where it starts keeps its node, even while in use.
    let resized = |k: &KernelPartition| {
        partitions.iter().find(|p| (p.number, p.extent.first_lba * sector) == (k.number, k.start))
    };
    // The kernel refuses a partition that would overlap another it has (EBUSY): old partitions go first,
    // then those that shrink, then those that grow into the room made, then the new ones.
    let changed: Vec<&KernelPartition> = kernel.iter().filter(|k| !unchanged(k)).collect();
    for old in changed.iter().filter(|k| resized(k).is_none()) {
        ioctl::delete_partition(file, old.number).map_err(|e| {
            DiskError::device(device, format!("remove old partition {} from the kernel", old.number), e)
        })?;
    }
    let mut resizes: Vec<(u32, u64, u64, bool)> = changed
        .iter()
        .filter_map(|old| resized(old).map(|p| (old, place(p))))
        .map(|(old, (number, start, length))| (number, start, length, length > old.size))
        .collect();
    // Shrinking (false) before growing (true).
    resizes.sort_by_key(|(_, _, _, grows)| *grows);
    for (number, start, length, _) in resizes {
        ioctl::resize_partition(file, number, start, length)
            .map_err(|e| DiskError::device(device, format!("tell the kernel partition {number}'s new size"), e))?;
    }
    for partition in partitions {
        let (number, start, length) = place(partition);
        let there = |k: &KernelPartition| (k.number, k.start) == (number, start);
        if kernel.iter().any(there) {
            continue;
        }
        ioctl::add_partition(file, partition.number, start, length)
            .map_err(|e| DiskError::device(device, format!("add partition {} to the kernel", partition.number), e))?;
    }
    Ok(())
}

/// Waits until every path exists (device nodes from devtmpfs, links from udev).
pub fn wait_for_nodes<'a>(
    device: &str,
    paths: impl Iterator<Item = &'a str>,
    limit: Duration,
) -> Result<(), DiskError> {
    let paths: Vec<&str> = paths.collect();
    let start = Instant::now();
    loop {
        let missing: Vec<String> = paths.iter().filter(|p| !Path::new(p).exists()).map(|p| p.to_string()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(DiskError::PartitionsMissing { device: device.to_string(), seconds: limit.as_secs(), missing });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_use_gpt_byte_order() {
        let esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        let bytes = guid_bytes(esp).expect("guid");
        assert_eq!(bytes[..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(bytes[8..10], [0xBA, 0x4B]);
        assert_eq!(guid_text(&bytes), esp);
    }
}
