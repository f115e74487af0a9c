//! The block-device ioctls the disk layer needs, with safe wrappers.
#![allow(unsafe_code, unsafe_op_in_unsafe_fn)]

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::{ioctl_none, ioctl_read, ioctl_read_bad, ioctl_write_ptr_bad, request_code_none};

ioctl_none!(blkrrpart, 0x12, 95);
ioctl_read!(blkgetsize64, 0x12, 114, u64);
ioctl_read_bad!(blksszget, request_code_none!(0x12, 104), libc_int);
ioctl_write_ptr_bad!(blkdiscard, request_code_none!(0x12, 119), [u64; 2]);
ioctl_write_ptr_bad!(blkpg, request_code_none!(0x12, 105), BlkpgIoctlArg);

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

const BLKPG_ADD_PARTITION: libc_int = 1;
const BLKPG_DEL_PARTITION: libc_int = 2;
const BLKPG_RESIZE_PARTITION: libc_int = 3;

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc_int,
    flags: libc_int,
    datalen: libc_int,
    data: *mut BlkpgPartition,
}

#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

fn io(result: nix::Result<libc_int>) -> std::io::Result<()> {
    result.map(|_| ()).map_err(std::io::Error::from)
}

/// Asks the kernel to read the partition table again (BLKRRPART).
pub fn reread_partitions(file: &File) -> std::io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the descriptor is open for the duration of the call.
    io(unsafe { blkrrpart(file.as_raw_fd()) })
}

/// Size of the device in bytes.
pub fn size_bytes(file: &File) -> std::io::Result<u64> {
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer, which lives across the call.
    io(unsafe { blkgetsize64(file.as_raw_fd(), &mut size) })?;
    Ok(size)
}

/// Logical sector size in bytes.
pub fn logical_sector_size(file: &File) -> std::io::Result<u32> {
    let mut size: libc_int = 0;
    // SAFETY: BLKSSZGET writes one int to the pointer, which lives across the call.
    io(unsafe { blksszget(file.as_raw_fd(), &mut size) })?;
    Ok(size as u32)
}

/// Discards `length` bytes from `offset` (BLKDISCARD).
pub fn discard(file: &File, offset: u64, length: u64) -> std::io::Result<()> {
    let range = [offset, length];
    // SAFETY: BLKDISCARD reads two u64 from the pointer, which lives across the call.
    io(unsafe { blkdiscard(file.as_raw_fd(), &range) })
}

fn blkpg_partition(op: libc_int, file: &File, number: u32, start: u64, length: u64) -> std::io::Result<()> {
    let mut partition = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: number as libc_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc_int,
        data: &mut partition,
    };
    // SAFETY: the kernel reads the argument and the partition it points to; both live across the call.
    io(unsafe { blkpg(file.as_raw_fd(), &arg) })
}

/// Tells the kernel about one partition (BLKPG_ADD_PARTITION); offsets in bytes.
pub fn add_partition(file: &File, number: u32, start: u64, length: u64) -> std::io::Result<()> {
    blkpg_partition(BLKPG_ADD_PARTITION, file, number, start, length)
}

/// Makes the kernel forget one partition (BLKPG_DEL_PARTITION).
pub fn delete_partition(file: &File, number: u32) -> std::io::Result<()> {
    blkpg_partition(BLKPG_DEL_PARTITION, file, number, 0, 0)
}

/// Tells the kernel that a partition now has `length` bytes from the same start (BLKPG_RESIZE_PARTITION);
/// unlike removing and adding it, this works while the partition is in use.
pub fn resize_partition(file: &File, number: u32, start: u64, length: u64) -> std::io::Result<()> {
    blkpg_partition(BLKPG_RESIZE_PARTITION, file, number, start, length)
}
