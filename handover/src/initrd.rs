//! How much memory an initrd takes once the kernel has unpacked it: the cpio archives it is made of
//! (plain, zstd or gzip, concatenated as the kernel accepts them), decompressed and counted, without
//! holding any of it in memory.

use std::fs;
use std::io::{self, BufRead, BufReader, Seek};
use std::path::Path;

const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP: [u8; 2] = [0x1f, 0x8b];
const NEWC: &[u8; 6] = b"070701";
const NEWC_CRC: &[u8; 6] = b"070702";

/// Bytes of the plain cpio archives in the initrd at `path`, or `None` when a part is compressed in a way
/// not read here (xz, lz4, bzip2) or is not a cpio archive.
pub fn unpacked_size(path: &Path) -> io::Result<Option<u64>> {
    let mut reader = BufReader::with_capacity(1 << 16, fs::File::open(path)?);
    let mut total = 0u64;
    loop {
        // Archives are padded with zeros to a 4-byte (or any) boundary.
        let next = loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                return Ok(Some(total));
            }
            match buffer.iter().position(|b| *b != 0) {
                Some(at) => {
                    reader.consume(at);
                    break reader.fill_buf()?.to_vec();
                }
                None => {
                    let all = buffer.len();
                    reader.consume(all);
                }
            }
        };
        let counted = if next.starts_with(NEWC) || next.starts_with(NEWC_CRC) {
            cpio_length(&mut reader)?
        } else if next.starts_with(&ZSTD) {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut reader).map_err(io::Error::other)?;
            let length = io::copy(&mut decoder, &mut io::sink())?;
            skip_zstd_checksum(&mut reader)?;
            length
        } else if next.starts_with(&GZIP) {
            let mut decoder = flate2::bufread::GzDecoder::new(&mut reader);
            io::copy(&mut decoder, &mut io::sink())?
        } else {
            return Ok(None);
        };
        total += counted;
    }
}

/// The length of the plain cpio archive at the reader's position, which is left after its trailer.
fn cpio_length<R: BufRead + Seek>(reader: &mut R) -> io::Result<u64> {
    let start = reader.stream_position()?;
    let mut header = [0u8; 110];
    loop {
        reader.read_exact(&mut header)?;
        if &header[..6] != NEWC && &header[..6] != NEWC_CRC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a cpio header without its magic"));
        }
        let field = |index: usize| {
            let text = std::str::from_utf8(&header[6 + index * 8..14 + index * 8]).unwrap_or("");
            u64::from_str_radix(text, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a cpio header field"))
        };
        let (file_size, name_size) = (field(6)?, field(11)?);
        let mut name = vec![0u8; name_size as usize];
        reader.read_exact(&mut name)?;
        // The name, then the data, each padded to 4 bytes from the archive's start.
        let after_name = reader.stream_position()?;
        reader.seek_relative(((4 - (after_name - start) % 4) % 4) as i64)?;
        let data_end = reader.stream_position()? + file_size;
        reader.seek_relative((file_size + (4 - (data_end - start) % 4) % 4) as i64)?;
        if name.starts_with(b"TRAILER!!!") {
            return Ok(reader.stream_position()? - start);
        }
    }
}

/// A zstd frame may end in a 4-byte checksum the decoder leaves unread.
fn skip_zstd_checksum<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let buffer = reader.fill_buf()?;
    let known =
        |b: &[u8]| b.is_empty() || b[0] == 0 || b.starts_with(&ZSTD) || b.starts_with(&GZIP) || b.starts_with(b"0707");
    if !known(buffer) && buffer.len() >= 4 && known(&buffer[4..]) {
        reader.consume(4);
    }
    Ok(())
}
