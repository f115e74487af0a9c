//! Whole small disk images whose GPT headers carry valid checksums, for what the fuzzer chose as their
//! fields and entries: reading them may refuse a copy, never panic or allocate beyond the image's table
//! area (the crash of a backup header declaring 256-byte or 0xFFFFFFFF entries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use partitioner::gpt_read::{read_image, seal_header, GptCopy, ARRAY_LIMIT};

/// 64 KiB: 128 sectors of 512 bytes (the fuzzer's inputs are up to 64 KiB).
const SECTORS: u64 = 128;

fuzz_target!(|data: &[u8]| {
    let mut image = vec![0u8; (SECTORS * 512) as usize];
    // The fuzzer's bytes fill the image from sector 1 on (so both headers and the entry arrays are its),
    // then each header gets its signature and own sector, and its checksums.
    let room = image.len() - 512;
    image[512..512 + data.len().min(room)].copy_from_slice(&data[..data.len().min(room)]);
    if data.len() > room {
        let rest = &data[room..];
        let last = image.len() - 512;
        image[last..last + rest.len().min(512)].copy_from_slice(&rest[..rest.len().min(512)]);
    }
    for lba in [1, SECTORS - 1] {
        let at = (lba * 512) as usize;
        image[at..at + 8].copy_from_slice(b"EFI PART");
        image[at + 24..at + 32].copy_from_slice(&lba.to_le_bytes());
        seal_header(&mut image, 512, lba);
    }
    let (primary, backup) = read_image(&image, 512);
    for copy in [primary, backup] {
        if let GptCopy::Read(entries) = copy {
            assert!(entries.len() as u64 * 128 <= ARRAY_LIMIT);
        }
    }
});
