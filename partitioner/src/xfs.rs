//! Whether an XFS that mkfs made is whole, read from its primary superblock without a program.

use std::io::Read;

/// Offset of `sb_inprogress` in the XFS superblock (`struct xfs_dsb` in the kernel's
/// fs/xfs/libxfs/xfs_format.h): mkfs.xfs sets it with its first write and clears it with its last, and
/// nothing else sets it, so a used XFS never has it set.
const IN_PROGRESS: usize = 126;

/// `Ok(Err(why))` when the XFS on `device` was cut short inside mkfs (or holds no XFS superblock): the
/// same field `xfs_db -r -c 'sb 0' -c 'print inprogress'` prints, read directly.
pub fn xfs_whole(device: &str) -> std::io::Result<Result<(), String>> {
    let mut superblock = [0u8; 512];
    std::fs::File::open(device)?.read_exact(&mut superblock)?;
    if &superblock[..4] != b"XFSB" {
        return Ok(Err(format!("{device} holds no XFS superblock")));
    }
    if superblock[IN_PROGRESS] != 0 {
        return Ok(Err(format!("{device}: mkfs.xfs did not finish (sb_inprogress is set)")));
    }
    Ok(Ok(()))
}
