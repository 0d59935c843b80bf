//! Encryption of secrets at rest.
//!
//! App secrets, callback tokens and EncodingAESKeys are sealed with
//! AES-256-GCM under the master key (`UNION360_MASTER_KEY`), with a fresh
//! random nonce per value and the value's purpose (for example
//! `app.secret:wx…`) as associated data, so a sealed value copied into
//! another column or another app's row does not open. The sealed form is
//! `v1:` followed by base64 of nonce ‖ ciphertext. Other uses of a secret
//! key (signing pagination cursors) take a key of their own derived from
//! the master key for their purpose ([`MasterKey::mac_for`]), never the
//! master key itself.
//!
//! Where the master key comes from: the setting, or, on SQLite only, a key
//! file generated beside the database (mode 0600). PostgreSQL deployments
//! must set the key: instances share the database and so must share the key.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::store::{SqliteLocation, sqlite_location};

const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key is not 32 bytes of base64 or hex.
    #[error("the master key must be 32 bytes, written as 44 base64 characters or 64 hex digits")]
    BadKey,
    /// PostgreSQL was configured without a master key.
    #[error(
        "UNION360_MASTER_KEY is required with PostgreSQL: every instance sharing the database must use the same key (generate one with `openssl rand -base64 32`)"
    )]
    KeyRequired,
    /// The key file could not be read or written.
    #[error("master key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cipher refused to seal a value.
    #[error("a value could not be sealed")]
    Seal,
    /// A sealed value is malformed, was sealed under another key or for another purpose.
    #[error("a sealed value could not be opened (wrong master key, or tampered data)")]
    Open,
}

/// Where the master key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// From the `UNION360_MASTER_KEY` setting.
    Setting,
    /// Read from an existing key file.
    File(PathBuf),
    /// Generated into a new key file.
    Generated(PathBuf),
    /// Generated for an in-memory database; gone with the process.
    Ephemeral,
}

/// The 256-bit master key that seals every secret at rest, and from which
/// the keys of other uses are derived ([`MasterKey::mac_for`]).
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HMAC-SHA256 keyed with the master key: the derivation function.
    kdf: Hmac<Sha256>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses a key written as base64 (44 characters) or hex (64 digits).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CryptoError::BadKey)?
        } else {
            STANDARD.decode(text).map_err(|_| CryptoError::BadKey)?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            kdf: hmac_sha256(bytes),
        }
    }

    /// An HMAC-SHA256 keyed for `purpose` alone (for example `cursor`): its
    /// key is HMAC-SHA256 of the purpose under the master key, so it reveals
    /// nothing of the master key or of the key of any other purpose, and it
    /// changes when the master key does.
    pub fn mac_for(&self, purpose: &str) -> Hmac<Sha256> {
        let mut kdf = self.kdf.clone();
        kdf.update(b"union360 derived key\0");
        kdf.update(purpose.as_bytes());
        hmac_sha256(&kdf.finalize().into_bytes().into())
    }

    /// A fresh random key and its base64 text.
    pub fn generate() -> (Self, SecretString) {
        let key: [u8; 32] = Aes256Gcm::generate_key(OsRng).into();
        let text = STANDARD.encode(key);
        (Self::from_bytes(&key), SecretString::from(text))
    }

    /// Resolves the key for a database: the setting when given; otherwise a
    /// key file beside a SQLite database (created with mode 0600 when absent);
    /// a throw-away key for in-memory SQLite; an error for PostgreSQL.
    pub fn resolve(
        setting: Option<&SecretString>,
        database_url: &str,
    ) -> Result<(Self, KeyOrigin), CryptoError> {
        if let Some(text) = setting {
            return Ok((Self::parse(text.expose_secret())?, KeyOrigin::Setting));
        }
        match sqlite_location(database_url) {
            SqliteLocation::NotSqlite => Err(CryptoError::KeyRequired),
            SqliteLocation::Memory => Ok((Self::generate().0, KeyOrigin::Ephemeral)),
            SqliteLocation::File(db) => {
                let path = key_file_for(&db);
                Self::from_key_file(&path)
            }
        }
    }

    fn from_key_file(path: &Path) -> Result<(Self, KeyOrigin), CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text)?, KeyOrigin::File(path.to_owned()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written to a private temporary file, then linked into place:
                // a process starting at the same moment either wins the link
                // or reads the complete key of the one that did.
                let (key, text) = Self::generate();
                let mut temp = path.as_os_str().to_owned();
                temp.push(format!(".{}.tmp", std::process::id()));
                let temp = PathBuf::from(temp);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let written = options
                    .open(&temp)
                    .and_then(|mut file| writeln!(file, "{}", text.expose_secret()))
                    .and_then(|()| std::fs::hard_link(&temp, path));
                let _ = std::fs::remove_file(&temp);
                match written {
                    Ok(()) => Ok((key, KeyOrigin::Generated(path.to_owned()))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(io)?;
                        Ok((Self::parse(&text)?, KeyOrigin::File(path.to_owned())))
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plain` for `purpose` (associated data that must match on opening).
    pub fn seal(&self, purpose: &str, plain: &str) -> Result<String, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// Opens a value sealed for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<SecretString, CryptoError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Open)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| CryptoError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Open)
    }
}

impl MasterKey {
    /// Opens `sealed` (sealed for `purpose` under this key) and seals it
    /// again under `new`: one value of a master-key rotation.
    pub fn reseal(
        &self,
        new: &MasterKey,
        purpose: &str,
        sealed: &str,
    ) -> Result<String, CryptoError> {
        let plain = self.open(purpose, sealed)?;
        new.seal(purpose, plain.expose_secret())
    }
}

/// Replaces the key file at `path` with `text` (mode 0600), keeping the
/// old file as `<path>.previous`. The new file is written beside it first
/// and renamed into place, so the path always holds a whole key.
pub fn replace_key_file(path: &Path, text: &SecretString) -> std::io::Result<PathBuf> {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (temp, previous) = (with_suffix(".new"), with_suffix(".previous"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    writeln!(file, "{}", text.expose_secret())?;
    file.sync_all()?;
    drop(file);
    let _ = std::fs::remove_file(&previous);
    std::fs::hard_link(path, &previous)?;
    std::fs::rename(&temp, path)?;
    // The rename itself is durable once the directory is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(previous)
}

/// HMAC-SHA256 under a 256-bit key. HMAC pads a key shorter than its block
/// with zeros; padding it here makes the construction infallible.
fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into())
}

/// Decodes a WeChat EncodingAESKey (43 base64 characters) into its 32-byte key.
///
/// WeChat's keys are decoded as `key + "="`, and many real keys have
/// non-zero trailing bits that strict base64 decoders reject; they are
/// accepted here, as WeChat itself does.
pub fn decode_encoding_aes_key(key: &str) -> Option<[u8; 32]> {
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    if key.len() != 43 {
        return None;
    }
    LENIENT.decode(format!("{key}=")).ok()?.try_into().ok()
}

/// The key file that goes with a SQLite database file: `<db>.master.key`.
pub fn key_file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".master.key");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_the_same_key_and_purpose() {
        let (key, _) = MasterKey::generate();
        let sealed = key.seal("app.secret:wx1", "s3cret").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            key.open("app.secret:wx1", &sealed).unwrap().expose_secret(),
            "s3cret"
        );
        assert!(key.open("app.secret:wx2", &sealed).is_err());
        let (other, _) = MasterKey::generate();
        assert!(other.open("app.secret:wx1", &sealed).is_err());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let (key, _) = MasterKey::generate();
        assert_ne!(
            key.seal("p", "same").unwrap(),
            key.seal("p", "same").unwrap()
        );
    }

    #[test]
    fn derived_macs_differ_by_purpose_and_by_master_key() {
        let tag = |key: &MasterKey, purpose: &str| {
            let mut mac = key.mac_for(purpose);
            mac.update(b"data");
            mac.finalize().into_bytes()
        };
        let key = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let same = MasterKey::parse(&STANDARD.encode([0xab; 32])).unwrap();
        assert_eq!(tag(&key, "cursor"), tag(&same, "cursor"));
        assert_ne!(tag(&key, "cursor"), tag(&key, "other"));
        let (other, _) = MasterKey::generate();
        assert_ne!(tag(&key, "cursor"), tag(&other, "cursor"));
    }

    #[test]
    fn keys_parse_from_base64_and_hex_only_at_32_bytes() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(MasterKey::parse("not a key").is_err());
    }

    #[test]
    fn encoding_aes_keys_decode_like_wechat_does() {
        // The key of WeChat's own sample (wechatpy's tests), whose last
        // character carries non-zero trailing bits.
        let key = decode_encoding_aes_key("kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR").unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(&key[..4], &[0x91, 0x6c, 0x4f, 0x11]);
        assert!(decode_encoding_aes_key("too-short").is_none());
        assert!(decode_encoding_aes_key(&"!".repeat(43)).is_none());
    }
}
