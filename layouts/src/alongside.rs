//! Installing alongside what is on a disk: a preset's new partitions go into the largest free extent of a
//! disk whose partitions are all kept (as `nix-dabei probe` reads them back), and an existing ESP with
//! room for NixOS's kernels is reused at /boot instead of making a second one.

use crate::gpt::Geometry;
use crate::presets::{self, PresetError, PresetKind, PresetOptions};
use crate::{Content, Disk, Format, Plan};

/// The free space an ESP needs to be reused: a kernel and initrd for a few generations (GRUB copies them
/// to /boot, which is the ESP).
pub const ESP_ROOM: u64 = 150 << 20;

/// A plan that keeps a disk's partitions and adds a preset's in its free space.
#[derive(Debug, Clone, PartialEq)]
pub struct Alongside {
    /// The plan.
    pub plan: Plan,
    /// What was decided, for people: where the new partitions go, whether the ESP is reused.
    pub notes: Vec<String>,
}

/// Why the new system cannot go beside what is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlongsideError {
    /// Only one-disk presets go beside kept partitions.
    #[error("installing alongside takes one disk and a one-disk preset (single or ext4), not mirror")]
    NotOneDisk,
    /// The disk has an MBR table.
    #[error(
        "installing alongside goes into a GPT disk's free space; this disk has an MBR table (add partitions to \
         the plan `nix-dabei probe` writes instead)"
    )]
    Mbr,
    /// A partition of the disk has no known place.
    #[error("partition {0} of the disk has no start and exact size: read the disk back with nix-dabei probe")]
    Unplaced(String),
    /// There is not enough free space.
    #[error(
        "the largest free extent of {device} is {largest}, but the new system needs at least {needed}: shrink \
         or delete a partition first"
    )]
    NoRoom {
        /// The disk.
        device: String,
        /// The largest free extent, for people.
        largest: String,
        /// What the new partitions need at least, for people.
        needed: String,
    },
    /// The preset could not be built.
    #[error(transparent)]
    Preset(#[from] PresetError),
}

/// A free extent of a disk, in bytes, and how many kept partitions lie before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeExtent {
    /// First byte (aligned to 1 MiB).
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// Partitions of the disk's order before it.
    pub after: usize,
}

/// The free extents between a disk's partitions (each placed: start and exact size), aligned to 1 MiB.
pub fn free_extents(disk: &Disk, disk_size: u64) -> Result<Vec<FreeExtent>, AlongsideError> {
    let sector = u64::from(disk.logical_sector_size);
    let geometry = Geometry::new(disk_size, sector);
    let alignment = geometry.alignment() * sector;
    let first = (geometry.first_usable() * sector).div_ceil(alignment) * alignment;
    let end = geometry.last_usable().map_or(0, |last| (last + 1) * sector);
    let mut placed = Vec::new();
    for (name, partition) in &disk.partitions {
        let start = partition.start.as_ref().and_then(|start| start.bytes());
        match (start, partition.size.bytes()) {
            (Some(start), Some(size)) => placed.push((start, start + size)),
            _ => return Err(AlongsideError::Unplaced(name.clone())),
        }
    }
    let mut extents = Vec::new();
    let mut cursor = first;
    for (index, &(start, stop)) in placed.iter().enumerate() {
        if start >= cursor + alignment {
            extents.push(FreeExtent { start: cursor, size: start - cursor, after: index });
        }
        cursor = cursor.max(stop.div_ceil(alignment) * alignment);
    }
    // The last partition ends on a sector, not a mebibyte; the allocator rounds the same way.
    let size = end.saturating_sub(cursor) / alignment * alignment;
    if size > 0 {
        extents.push(FreeExtent { start: cursor, size, after: placed.len() });
    }
    Ok(extents)
}

/// The plan for installing `options`' one-disk preset beside the kept partitions of `kept`. `esp_free`
/// says how many bytes are free in a partition's filesystem (None when it cannot be told); an ESP with
/// [`ESP_ROOM`] free is reused, otherwise the new system gets an ESP of its own in the free space.
pub fn alongside(
    kept: &Disk,
    options: &PresetOptions,
    esp_free: &dyn Fn(&str) -> Option<u64>,
) -> Result<Alongside, AlongsideError> {
    if options.kind == PresetKind::Mirror || options.disks.len() != 1 {
        return Err(AlongsideError::NotOneDisk);
    }
    // The presets' partitions (an ESP, a BIOS boot partition) are GPT ones.
    if kept.table == crate::gpt::TableFormat::Msdos {
        return Err(AlongsideError::Mbr);
    }
    let disk_size = kept.size.or(options.disks[0].size).unwrap_or(0);
    let largest = free_extents(kept, disk_size)?.into_iter().max_by_key(|extent| extent.size);
    let mut notes = Vec::new();
    let mut built = presets::build(options)?;
    let Some((disk_name, mut preset_disk)) = built.disks.shift_remove_index(0) else {
        return Err(AlongsideError::NotOneDisk);
    };
    let mut new_partitions = std::mem::take(&mut preset_disk.partitions);
    let mut disk = Disk { partitions: kept.partitions.clone(), size: kept.size.or(preset_disk.size), ..preset_disk };

    let esp = disk.partitions.iter_mut().find(|(_, p)| {
        p.kind.as_deref() == Some("esp")
            && matches!(&p.content, Some(Content::Filesystem(fs)) if fs.format == Format::Vfat)
    });
    if let Some((name, partition)) = esp {
        let free = esp_free(name);
        let mib = |bytes: u64| bytes >> 20;
        match free {
            Some(free) if free >= ESP_ROOM => {
                if let Some(Content::Filesystem(fs)) = &mut partition.content {
                    fs.mountpoint = Some("/boot".into());
                    fs.mount_options = vec!["umask=0077".into()];
                }
                new_partitions.shift_remove("esp");
                notes.push(format!("the ESP {name} ({} MiB free) is reused at /boot, not formatted", mib(free)));
            }
            Some(free) => notes.push(format!(
                "the ESP {name} has {} MiB free, less than the {} MiB NixOS's kernels need: the new system gets \
                 an ESP of its own",
                mib(free),
                mib(ESP_ROOM)
            )),
            None => {
                notes.push(format!("cannot tell how full the ESP {name} is: the new system gets an ESP of its own"))
            }
        }
    }
    let needed: u64 = new_partitions.values().map(|p| p.size.bytes().unwrap_or(1 << 20)).sum();
    let room = largest.map_or(0, |extent| extent.size);
    let Some(largest) = largest.filter(|_| room >= needed) else {
        return Err(AlongsideError::NoRoom {
            device: kept.device.clone(),
            largest: crate::size::human(room),
            needed: crate::size::human(needed),
        });
    };
    notes.push(format!(
        "the new partitions ({}) go into the free space at {} MiB ({})",
        new_partitions.keys().cloned().collect::<Vec<_>>().join(", "),
        largest.start >> 20,
        crate::size::human(largest.size)
    ));
    for (offset, (name, partition)) in new_partitions.into_iter().enumerate() {
        disk.partitions.shift_insert(largest.after + offset, name, partition);
    }
    built.disks.insert(disk_name, disk);
    Ok(Alongside { plan: built, notes })
}
