//! The SSH public key a server is made with: read from an `authorized_keys`-style line, and named by the
//! fingerprint both Hetzner APIs use (MD5 of the key blob, as colon-separated hex).

use md5::{Digest, Md5};

use crate::HetznerError;

/// One SSH public key, as `ssh-ed25519 AAAA... comment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key type and base64 blob, without the comment: what is uploaded.
    pub line: String,
    /// The comment, if the line had one.
    pub comment: Option<String>,
    /// MD5 of the decoded blob, as `aa:bb:...` (what `ssh-keygen -E md5 -l` prints after `MD5:`).
    pub fingerprint: String,
}

impl PublicKey {
    /// Reads the first key of a `.pub` file's text.
    pub fn parse(text: &str) -> Result<PublicKey, HetznerError> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(HetznerError::Input("the SSH key file holds no public key (type, base64 key)".into()));
        };
        let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
        let Some(bytes) = base64_decode(blob).filter(|_| known) else {
            return Err(HetznerError::Input(format!("{kind} ... is not an SSH public key")));
        };
        let digest = Md5::digest(&bytes);
        let fingerprint: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
        let comment: Vec<&str> = fields.collect();
        Ok(PublicKey {
            line: format!("{kind} {blob}"),
            comment: (!comment.is_empty()).then(|| comment.join(" ")),
            fingerprint: fingerprint.join(":"),
        })
    }

    /// The fingerprint without colons (32 hex digits): fits a label value.
    pub fn fingerprint_label(&self) -> String {
        self.fingerprint.replace(':', "")
    }
}

/// Standard base64 with padding; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut group = 0u32;
        for &c in &chunk[..4 - padding] {
            group = (group << 6) | u32::from(value(c)?);
        }
        group <<= 6 * padding;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_numbers() {
        assert_eq!(base64_decode("TWFu").as_deref(), Some(&b"Man"[..]));
        assert_eq!(base64_decode("TWE=").as_deref(), Some(&b"Ma"[..]));
        assert_eq!(base64_decode("TQ==").as_deref(), Some(&b"M"[..]));
        assert_eq!(base64_decode("TQ=="), Some(b"M".to_vec()));
        assert_eq!(base64_decode("T=Q="), None);
        assert_eq!(base64_decode("TWF"), None);
    }

    /// The fingerprint `ssh-keygen -E md5 -l -f` prints for nixpkgs' snakeoil test key.
    #[test]
    fn the_fingerprint_is_ssh_keygens_md5() {
        let key = PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKiXxsQWQ7kSe4Ygf0T3SRDl5tDjPTXK3lsvHaPXw3Nm snakeoil\n",
        )
        .expect("a key");
        assert_eq!(key.comment.as_deref(), Some("snakeoil"));
        assert_eq!(key.fingerprint, "ba:a1:fd:e2:78:b9:ce:e8:f6:45:60:33:01:9d:5a:01");
        assert!(PublicKey::parse("hello world").is_err());
    }
}
