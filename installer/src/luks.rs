//! LUKS2 through libcryptsetup: format (argon2id), open, close. Keys are handed over in memory.

use std::path::Path;
use std::sync::Mutex;

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotInfo};
use libcryptsetup_rs::{CryptInit, CryptPbkdfType, Either, LibcryptErr};

use layouts::nodes::luks::LUKS_PARAMETERS;

use crate::secret::Secret;

/// What libcryptsetup said while the current operation ran; it would print to stderr otherwise.
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect_message(
    _level: std::os::raw::c_int,
    message: *const std::os::raw::c_char,
    _data: *mut std::os::raw::c_void,
) {
    if message.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().trim().to_string();
    if let Ok(mut messages) = MESSAGES.lock() {
        messages.push(text);
    }
}

fn install_log_callback() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| libcryptsetup_rs::set_log_callback::<()>(Some(collect_message), None));
}

/// A LUKS operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {action}: {error}{}", if messages.is_empty() { String::new() } else { format!(" \
    ({})", messages.join("; ")) })]
pub struct LuksError {
    /// The device.
    pub device: String,
    /// What was being done.
    pub action: &'static str,
    /// libcryptsetup's error; a wrong passphrase shows as "Operation not permitted".
    pub error: String,
    /// What libcryptsetup logged meanwhile.
    pub messages: Vec<String>,
}

fn failure<'a>(device: &'a str, action: &'static str) -> impl FnOnce(LibcryptErr) -> LuksError + 'a {
    move |error| LuksError {
        device: device.to_string(),
        action,
        error: error.to_string(),
        messages: MESSAGES.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default(),
    }
}

/// Key derivation settings: argon2id with libcryptsetup's benchmark by default; `weak` (tests only)
/// uses 4 iterations of 8 MiB so that emulated machines are quick.
fn pbkdf(weak: bool) -> CryptPbkdfType {
    let parameters = LUKS_PARAMETERS;
    if weak {
        // Tests under emulation only: argon2id at its cheapest, so that a header takes no time to make.
        CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: Some(parameters.hash.to_string()),
            time_ms: 0,
            iterations: 4,
            max_memory_kb: 8192,
            parallel_threads: 1,
            flags: CryptPbkdf::NO_BENCHMARK,
        }
    } else {
        CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: Some(parameters.hash.to_string()),
            time_ms: parameters.iter_time_ms,
            iterations: 0,
            max_memory_kb: parameters.memory_kib,
            parallel_threads: parameters.parallel,
            flags: CryptPbkdf::empty(),
        }
    }
}

/// Formats `device` as LUKS2 (aes-xts-plain64, 512-bit key) with a key slot for `key`, then one for each
/// of `more_keys`, in order: a header with fewer active slots was cut short.
pub fn format(
    device: &str,
    uuid: &str,
    label: Option<&str>,
    key: &Secret,
    more_keys: &[Secret],
    weak: bool,
) -> Result<(), LuksError> {
    install_log_callback();
    let uuid = uuid::Uuid::parse_str(uuid).map_err(|e| LuksError {
        device: device.to_string(),
        action: "format",
        error: e.to_string(),
        messages: vec![],
    })?;
    let mut crypt = CryptInit::init(Path::new(device)).map_err(failure(device, "open"))?;
    crypt.settings_handle().set_pbkdf_type(&pbkdf(weak)).map_err(failure(device, "set key derivation"))?;
    crypt
        .context_handle()
        .format::<()>(
            EncryptionFormat::Luks2,
            (LUKS_PARAMETERS.cipher, LUKS_PARAMETERS.cipher_mode),
            Some(uuid),
            Either::Right(LUKS_PARAMETERS.key_bits / 8),
            None,
        )
        .map_err(failure(device, "format"))?;
    if let Some(label) = label {
        crypt.context_handle().set_label(Some(label), None).map_err(failure(device, "set label"))?;
    }
    for key in std::iter::once(key).chain(more_keys) {
        crypt
            .keyslot_handle()
            .add_by_key(None, None, key.expose(), CryptVolumeKey::empty())
            .map_err(failure(device, "add key slot"))?;
    }
    Ok(())
}

/// What a LUKS2 header says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksHeader {
    /// The header's UUID.
    pub uuid: String,
    /// Whether any key slot is active: a header made without one (a run cut between formatting and
    /// adding the key) can never be opened.
    pub usable: bool,
    /// How many key slots are active.
    pub key_slots: usize,
}

/// The LUKS2 header on `device`. Ask only of a device libblkid says carries one: any failure here is an
/// error, never "no header".
pub fn header(device: &str) -> Result<LuksHeader, LuksError> {
    install_log_callback();
    let mut crypt = CryptInit::init(Path::new(device)).map_err(failure(device, "open"))?;
    crypt
        .context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(failure(device, "read the LUKS header"))?;
    let uuid = crypt.status_handle().get_uuid().map_err(failure(device, "read the LUKS header's UUID"))?;
    // LUKS2 has 32 key slots.
    let key_slots = (0..32)
        .filter(|slot| {
            matches!(crypt.keyslot_handle().status(*slot), Ok(KeyslotInfo::Active | KeyslotInfo::ActiveLast))
        })
        .count();
    Ok(LuksHeader { uuid: uuid.to_string(), usable: key_slots > 0, key_slots })
}

/// Opens `device` as `/dev/mapper/<name>`.
pub fn open(device: &str, name: &str, key: &Secret, allow_discards: bool) -> Result<(), LuksError> {
    install_log_callback();
    let mut crypt = CryptInit::init(Path::new(device)).map_err(failure(device, "open"))?;
    crypt
        .context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(failure(device, "read the LUKS header"))?;
    let flags = if allow_discards { CryptActivate::ALLOW_DISCARDS } else { CryptActivate::empty() };
    crypt
        .activate_handle()
        .activate_by_passphrase(Some(name), None, key.expose(), flags)
        .map_err(failure(device, "unlock"))?;
    Ok(())
}

/// Closes `/dev/mapper/<name>`.
pub fn close(name: &str) -> Result<(), LuksError> {
    install_log_callback();
    let path = format!("/dev/mapper/{name}");
    let mut crypt = CryptInit::init_by_name_and_header(name, None).map_err(failure(&path, "find"))?;
    crypt.activate_handle().deactivate(name, CryptDeactivate::empty()).map_err(failure(&path, "close"))?;
    Ok(())
}
