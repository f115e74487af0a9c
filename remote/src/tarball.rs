//! Reading one file out of the kexec tarball (gzip-compressed ustar), to upload nix-dabei alone where the
//! rest is not needed yet.

use std::io::Read;
use std::path::Path;

use crate::RemoteError;

/// The contents of `member` (such as `kexec/nix-dabei`) in the gzip-compressed tar file at `path`.
pub fn member(path: &Path, member: &str) -> Result<Vec<u8>, RemoteError> {
    let fail = |why: String| RemoteError::Local(format!("{}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut archive = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut header = [0u8; 512];
    loop {
        archive.read_exact(&mut header).map_err(|e| fail(format!("not a gzip-compressed tar file ({e})")))?;
        if header.iter().all(|&b| b == 0) {
            return Err(fail(format!("has no {member}")));
        }
        let text = |range: std::ops::Range<usize>| {
            let field = &header[range];
            let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).trim().to_string()
        };
        let prefix = text(345..500);
        let name = if prefix.is_empty() { text(0..100) } else { format!("{prefix}/{}", text(0..100)) };
        let size = u64::from_str_radix(&text(124..136), 8).map_err(|_| fail(format!("bad size of {name}")))?;
        let padded = size.div_ceil(512) * 512;
        if name.trim_start_matches("./") == member && matches!(header[156], b'0' | 0) {
            let mut contents = vec![0u8; usize::try_from(size).map_err(|_| fail("too large".into()))?];
            archive.read_exact(&mut contents).map_err(|e| fail(e.to_string()))?;
            return Ok(contents);
        }
        std::io::copy(&mut (&mut archive).take(padded), &mut std::io::sink()).map_err(|e| fail(e.to_string()))?;
    }
}
