//! How much room a FAT filesystem (an ESP) has left, read from its boot sector and its first FAT, without
//! mounting it: an ESP that another system made is reused for NixOS's kernels only when they fit.

use std::io::{Read, Seek, SeekFrom};

/// A FAT filesystem's size and free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatSpace {
    /// Bytes in a cluster.
    pub cluster_bytes: u64,
    /// Clusters of the data area.
    pub clusters: u64,
    /// Clusters the FAT marks free.
    pub free_clusters: u64,
}

impl FatSpace {
    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_clusters * self.cluster_bytes
    }
}

fn invalid(device: &str, why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{device}: not a FAT filesystem ({why})"))
}

/// What a FAT's boot sector says of its layout, in sectors unless named otherwise.
struct Geometry {
    sector_bytes: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    fats: u64,
    fat_sectors: u64,
    root_sectors: u64,
    total: u64,
    clusters: u64,
    entry_bits: u64,
}

impl Geometry {
    fn read(device: &str, boot: &[u8; 512]) -> std::io::Result<Self> {
        let u16_at = |offset: usize| u64::from(u16::from_le_bytes([boot[offset], boot[offset + 1]]));
        if boot[510..512] != [0x55, 0xAA] {
            return Err(invalid(device, "no boot sector signature"));
        }
        let sector_bytes = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let total = if u16_at(19) != 0 { u16_at(19) } else { u32_at(boot, 32) };
        let fat_sectors = if u16_at(22) != 0 { u16_at(22) } else { u32_at(boot, 36) };
        if !matches!(sector_bytes, 512 | 1024 | 2048 | 4096)
            || sectors_per_cluster == 0
            || reserved == 0
            || fats == 0
            || fat_sectors == 0
        {
            return Err(invalid(device, "impossible boot sector values"));
        }
        let root_sectors = (root_entries * 32).div_ceil(sector_bytes);
        let data_start = reserved + fats * fat_sectors + root_sectors;
        let clusters =
            total.checked_sub(data_start).ok_or_else(|| invalid(device, "no data area"))? / sectors_per_cluster;
        // The FAT type follows from the cluster count alone (Microsoft's FAT specification).
        let entry_bits = match clusters {
            0..4085 => 12,
            4085..65525 => 16,
            _ => 32,
        };
        if (clusters + 2) * entry_bits / 8 + 1 > fat_sectors * sector_bytes + 1 {
            return Err(invalid(device, "the FAT is smaller than its clusters need"));
        }
        Ok(Geometry {
            sector_bytes,
            sectors_per_cluster,
            reserved,
            fats,
            fat_sectors,
            root_sectors,
            total,
            clusters,
            entry_bits,
        })
    }

    /// Bytes of one FAT that describe clusters (the rest of its sectors is padding).
    fn fat_bytes(&self) -> u64 {
        ((self.clusters + 2) * self.entry_bits).div_ceil(8).min(self.fat_sectors * self.sector_bytes)
    }

    /// The FAT entry of `cluster` in `fat`.
    fn entry(&self, fat: &[u8], cluster: u64) -> u64 {
        let at = |i: u64| usize::try_from(i).ok().and_then(|i| fat.get(i)).map_or(0, |&b| u64::from(b));
        match self.entry_bits {
            12 => {
                let offset = cluster * 3 / 2;
                let pair = at(offset) | (at(offset + 1) << 8);
                if cluster.is_multiple_of(2) {
                    pair & 0xFFF
                } else {
                    pair >> 4
                }
            }
            16 => at(cluster * 2) | (at(cluster * 2 + 1) << 8),
            _ => {
                let o = cluster * 4;
                (at(o) | (at(o + 1) << 8) | (at(o + 2) << 16) | (at(o + 3) << 24)) & 0x0FFF_FFFF
            }
        }
    }

    /// The smallest entry that marks a bad cluster (those above end a chain).
    fn bad_cluster(&self) -> u64 {
        match self.entry_bits {
            12 => 0xFF7,
            16 => 0xFFF7,
            _ => 0x0FFF_FFF7,
        }
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from(u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]))
}

fn read_at(file: &mut std::fs::File, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| std::io::Error::other("too large to read"))?];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Reads the FAT filesystem on `device` (FAT12, FAT16 or FAT32) and counts its free clusters.
pub fn fat_space(device: &str) -> std::io::Result<FatSpace> {
    let mut file = std::fs::File::open(device)?;
    let mut boot = [0u8; 512];
    file.read_exact(&mut boot)?;
    let geometry = Geometry::read(device, &boot)?;
    let fat = read_at(&mut file, geometry.reserved * geometry.sector_bytes, geometry.fat_bytes())?;
    let clusters = geometry.clusters;
    let free_clusters = (2..clusters + 2).filter(|&cluster| geometry.entry(&fat, cluster) == 0).count() as u64;
    Ok(FatSpace { cluster_bytes: geometry.sectors_per_cluster * geometry.sector_bytes, clusters, free_clusters })
}

/// How many clusters' entries [`fat_whole`] looks at together to find them all free.
const FREE_STRETCH: u64 = 256;

/// Bytes of a FAT [`fat_whole`] reads at a time: a multiple of every entry's size (FAT12's pair of
/// entries in 3 bytes, 2 and 4), so that no entry is split between two pieces.
const FAT_PIECE: u64 = 3 << 18;

/// Whether the FAT on `device` is whole: everything mkfs.fat writes is there and consistent, so that a
/// run cut inside mkfs (whose writes reach the disk in any order until it syncs) is told from a finished
/// one. `Ok(Err(why))` when it is not whole. Checked, in the order mkfs writes them:
/// - the boot sector's layout fits the device;
/// - FAT32: the FSInfo sector's three signatures, and the backup boot sector equal to the boot sector
///   (but for the state byte, which the kernel sets while mounted);
/// - every copy of the FAT: the same bytes as the first, its first entry the media byte, every entry
///   free, the next cluster of a chain, bad or a chain's end (never a cluster outside the volume);
/// - the root directory: in use in the FAT (FAT32), holding the boot sector's volume label when it
///   names one, and otherwise only free or plausible entries in its first sector.
///
/// The FAT is read 768 KiB of each copy at a time, so a FAT of any size is checked in little memory.
/// What it does not read, unlike `fsck.vfat -n`: the directory tree below the root and files' chains
/// (which mkfs does not write).
pub fn fat_whole(device: &str) -> std::io::Result<Result<(), String>> {
    let mut file = std::fs::File::open(device)?;
    let mut boot = [0u8; 512];
    file.read_exact(&mut boot)?;
    let geometry = match Geometry::read(device, &boot) {
        Ok(geometry) => geometry,
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => return Ok(Err(error.to_string())),
        Err(error) => return Err(error),
    };
    let g = &geometry;
    let size = file.seek(SeekFrom::End(0))?;
    if g.total * g.sector_bytes > size {
        return Ok(Err(format!("the boot sector says {} sectors, the device holds fewer", g.total)));
    }
    let u16_at = |offset: usize| u64::from(u16::from_le_bytes([boot[offset], boot[offset + 1]]));
    let fat32 = g.entry_bits == 32;
    if fat32 {
        let info = read_at(&mut file, u16_at(48) * g.sector_bytes, 512)?;
        if u32_at(&info, 0) != 0x4161_5252 || u32_at(&info, 484) != 0x6141_7272 || u32_at(&info, 508) != 0xAA55_0000 {
            return Ok(Err("the FSInfo sector lacks its signatures".into()));
        }
        let backup_at = u16_at(50);
        if backup_at != 0 {
            let backup = read_at(&mut file, backup_at * g.sector_bytes, 512)?;
            let differs = (0..512).any(|i| i != 0x41 && backup[i] != boot[i]);
            if differs {
                return Ok(Err("the backup boot sector differs from the boot sector".into()));
            }
        }
    }
    let bad = g.bad_cluster();
    let last = g.clusters + 1;
    let outside = |entry: u64| entry == 1 || (entry > last && entry < bad);
    let root_cluster = if fat32 { u32_at(&boot, 44) } else { 0 };
    let mut root_in_use = false;
    // The FAT is read a piece at a time, every copy's piece beside the first's: a FAT32 data disk of
    // terabytes has a FAT of hundreds of MiB.
    let fat_bytes = g.fat_bytes();
    let mut offset = 0;
    while offset < fat_bytes {
        let length = FAT_PIECE.min(fat_bytes - offset);
        let piece = read_at(&mut file, g.reserved * g.sector_bytes + offset, length)?;
        for copy in 1..g.fats {
            let at = (g.reserved + copy * g.fat_sectors) * g.sector_bytes + offset;
            if read_at(&mut file, at, length)? != piece {
                return Ok(Err(format!("FAT copy {} differs from the first", copy + 1)));
            }
        }
        if offset == 0 && piece[0] != boot[21] {
            return Ok(Err("the FAT does not begin with the media byte".into()));
        }
        // The clusters whose entries this piece holds; a piece starts at a whole entry (FAT12: a whole
        // pair), so an entry's place in it is its cluster's less the piece's first.
        let first_cluster = offset * 8 / g.entry_bits;
        let end_cluster = ((offset + length) * 8 / g.entry_bits).min(last + 1);
        let entry = |cluster: u64| g.entry(&piece, cluster - first_cluster);
        // Only entries in a stretch holding more than zero bytes are decoded: zero is a free entry, and
        // a fresh ESP's FAT is almost all zero (decoding each entry of a 1 GiB ESP was nearly half of
        // this check's time under emulation, `vm-tests bench`).
        let mut cluster = first_cluster.max(2);
        while cluster < end_cluster {
            let end = (cluster + FREE_STRETCH).min(end_cluster);
            let (from, to) = (cluster - first_cluster, end - first_cluster);
            let bytes = (from * g.entry_bits / 8)..(to * g.entry_bits).div_ceil(8);
            let free = usize::try_from(bytes.start)
                .ok()
                .zip(usize::try_from(bytes.end).ok())
                .and_then(|(start, end)| piece.get(start..end.min(piece.len())))
                .is_some_and(|stretch| stretch.iter().all(|&byte| byte == 0));
            if !free {
                if let Some(cluster) = (cluster..end).find(|&cluster| outside(entry(cluster))) {
                    return Ok(Err(format!("FAT entry {cluster} points outside the volume")));
                }
            }
            cluster = end;
        }
        if (first_cluster..end_cluster).contains(&root_cluster) {
            root_in_use = entry(root_cluster) != 0;
        }
        offset += length;
    }
    let (root_offset, root_length) = if fat32 {
        let cluster = root_cluster;
        if !(2..=last).contains(&cluster) || !root_in_use {
            return Ok(Err(format!("the root directory's cluster {cluster} is not in use")));
        }
        let data_start = g.reserved + g.fats * g.fat_sectors + g.root_sectors;
        ((data_start + (cluster - 2) * g.sectors_per_cluster) * g.sector_bytes, g.sectors_per_cluster * g.sector_bytes)
    } else {
        ((g.reserved + g.fats * g.fat_sectors) * g.sector_bytes, g.root_sectors * g.sector_bytes)
    };
    let root = read_at(&mut file, root_offset, root_length.min(g.sector_bytes))?;
    let label = if fat32 { &boot[71..82] } else { &boot[43..54] };
    let entries: Vec<&[u8]> = root.chunks_exact(32).take_while(|entry| entry[0] != 0).collect();
    if label != b"NO NAME    " && boot[if fat32 { 66 } else { 38 }] == 0x29 {
        if !entries.iter().any(|entry| entry[11] & 0x3F == 0x08 && &entry[..11] == label) {
            return Ok(Err("the root directory does not hold the volume's label".into()));
        }
    } else if entries.iter().any(|entry| entry[0] != 0xE5 && entry[11] & 0xC0 != 0) {
        return Ok(Err("the root directory holds what is no directory entry".into()));
    }
    Ok(Ok(()))
}
