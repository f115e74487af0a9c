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

/// Reads the FAT filesystem on `device` (FAT12, FAT16 or FAT32) and counts its free clusters.
pub fn fat_space(device: &str) -> std::io::Result<FatSpace> {
    let mut file = std::fs::File::open(device)?;
    let mut boot = [0u8; 512];
    file.read_exact(&mut boot)?;
    let u16_at = |offset: usize| u64::from(u16::from_le_bytes([boot[offset], boot[offset + 1]]));
    let u32_at = |offset: usize| {
        u64::from(u32::from_le_bytes([boot[offset], boot[offset + 1], boot[offset + 2], boot[offset + 3]]))
    };
    if boot[510..512] != [0x55, 0xAA] {
        return Err(invalid(device, "no boot sector signature"));
    }
    let sector_bytes = u16_at(11);
    let sectors_per_cluster = u64::from(boot[13]);
    let reserved = u16_at(14);
    let fats = u64::from(boot[16]);
    let root_entries = u16_at(17);
    let total = if u16_at(19) != 0 { u16_at(19) } else { u32_at(32) };
    let fat_sectors = if u16_at(22) != 0 { u16_at(22) } else { u32_at(36) };
    if !matches!(sector_bytes, 512 | 1024 | 2048 | 4096) || sectors_per_cluster == 0 || fats == 0 || fat_sectors == 0 {
        return Err(invalid(device, "impossible boot sector values"));
    }
    let root_sectors = (root_entries * 32).div_ceil(sector_bytes);
    let data_start = reserved + fats * fat_sectors + root_sectors;
    let clusters = total.checked_sub(data_start).ok_or_else(|| invalid(device, "no data area"))? / sectors_per_cluster;
    // The FAT type follows from the cluster count alone (Microsoft's FAT specification).
    let entry_bits = match clusters {
        0..4085 => 12,
        4085..65525 => 16,
        _ => 32,
    };
    let fat_bytes = (clusters + 2) * entry_bits / 8 + 1;
    if fat_bytes > fat_sectors * sector_bytes + 1 {
        return Err(invalid(device, "the FAT is smaller than its clusters need"));
    }
    let mut fat = vec![0u8; usize::try_from(fat_bytes).map_err(|_| invalid(device, "too large"))?];
    file.seek(SeekFrom::Start(reserved * sector_bytes))?;
    let readable = fat.len().min(usize::try_from(fat_sectors * sector_bytes).unwrap_or(usize::MAX));
    file.read_exact(&mut fat[..readable])?;
    let entry = |cluster: u64| -> u64 {
        let at = |i: u64| u64::from(fat[usize::try_from(i).unwrap_or(0)]);
        match entry_bits {
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
    };
    let free_clusters = (2..clusters + 2).filter(|&cluster| entry(cluster) == 0).count() as u64;
    Ok(FatSpace { cluster_bytes: sectors_per_cluster * sector_bytes, clusters, free_clusters })
}
