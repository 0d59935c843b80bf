//! The safe-mode cipher: WeChat's AES-256-CBC message envelope.
//!
//! The key is the app's EncodingAESKey read as base64 (43 characters plus
//! an implied `=`), and the IV is the key's first 16 bytes, so the IV never
//! changes: the 16 random bytes that open every plaintext are what makes two
//! seals of one message differ. The plaintext is
//! `random(16) ‖ u32 big-endian length ‖ message ‖ appid`, padded PKCS#7
//! style to a multiple of **32** bytes, so the pad is 1 to 32 bytes long.
//! Stock PKCS#7 helpers work on the cipher's 16-byte block and refuse pads
//! above 16, which real messages produce half of the time, so padding is
//! done here by hand and the cipher runs without padding.
//!
//! There is no MAC: verify `msg_signature` before calling
//! [`MessageCrypto::decrypt`] (see the parent module).

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::CallbackError;

/// The block WeChat pads to (twice the AES block).
const PAD_BLOCK: usize = 32;
/// The AES block size.
const AES_BLOCK: usize = 16;
/// The random prefix of every plaintext.
const RANDOM_LEN: usize = 16;
/// The big-endian message length after the random prefix.
const LENGTH_LEN: usize = 4;

/// One app's safe-mode cipher: its EncodingAESKey and its appid.
///
/// Keep the previous key's `MessageCrypto` for a while after changing the
/// EncodingAESKey and open with [`decrypt_with_rotation`]: pushes sealed
/// under the old key may still arrive.
#[derive(Clone)]
pub struct MessageCrypto {
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for MessageCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCrypto")
            .field("key", &"..")
            .field("appid", &self.appid)
            .finish()
    }
}

impl MessageCrypto {
    /// A cipher for `appid` under `encoding_aes_key` (the 43 characters shown
    /// in the WeChat console). Keys whose last character carries non-zero
    /// trailing bits are accepted, as WeChat issues them.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Self, CallbackError> {
        let key = crate::crypto::decode_encoding_aes_key(encoding_aes_key)
            .ok_or(CallbackError::InvalidKey)?;
        Ok(Self {
            key,
            appid: appid.to_owned(),
        })
    }

    /// Seals `message` for this app with a fresh random prefix; returns the
    /// base64 `Encrypt` value.
    pub fn encrypt(&self, message: &str) -> String {
        self.encrypt_with_random(message, rand::random())
    }

    /// Seals `message` with the given random prefix: deterministic, for
    /// tests and the simulator. Production code uses [`Self::encrypt`].
    pub fn encrypt_with_random(&self, message: &str, random: [u8; 16]) -> String {
        // A message of 4 GiB or more cannot be described by the format's u32
        // length; saturating makes such a seal fail to open rather than open
        // as something else.
        let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
        let mut plain = Vec::with_capacity(
            RANDOM_LEN + LENGTH_LEN + message.len() + self.appid.len() + PAD_BLOCK,
        );
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&length.to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.appid.as_bytes());
        pad(&mut plain);
        STANDARD.encode(self.seal_blocks(&plain))
    }

    /// Opens a base64 `Encrypt` value sealed for this app and returns the
    /// message (the XML of the push).
    ///
    /// Fails on bad base64, a ciphertext that is not whole AES blocks, a pad
    /// that is not 1 to 32 equal bytes, a length field pointing outside the
    /// plaintext, a message that is not UTF-8, or a trailing appid other than
    /// this app's ([`CallbackError::AppIdMismatch`]).
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CallbackError> {
        let sealed = STANDARD
            .decode(encrypt_b64)
            .map_err(|_| CallbackError::Base64)?;
        let plain = self.open_blocks(&sealed)?;
        let body = unpad(&plain)?;
        let rest = body.get(RANDOM_LEN..).ok_or(CallbackError::Length)?;
        let (length, rest) = rest
            .split_first_chunk::<LENGTH_LEN>()
            .ok_or(CallbackError::Length)?;
        let length =
            usize::try_from(u32::from_be_bytes(*length)).map_err(|_| CallbackError::Length)?;
        if length > rest.len() {
            return Err(CallbackError::Length);
        }
        let (message, appid) = rest.split_at(length);
        if appid != self.appid.as_bytes() {
            return Err(CallbackError::AppIdMismatch {
                found: String::from_utf8_lossy(appid).into_owned(),
            });
        }
        String::from_utf8(message.to_vec()).map_err(|_| CallbackError::Utf8)
    }

    /// AES-256-CBC over a whole number of blocks, IV = the key's first half.
    fn seal_blocks(&self, plain: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<Aes256>::new(&self.key.into(), &self.iv().into())
            .encrypt_padded_vec_mut::<NoPadding>(plain)
    }

    /// The inverse of [`Self::seal_blocks`], refusing anything that cannot
    /// hold the random prefix, the length and a pad.
    fn open_blocks(&self, sealed: &[u8]) -> Result<Vec<u8>, CallbackError> {
        if sealed.len() < PAD_BLOCK || !sealed.len().is_multiple_of(AES_BLOCK) {
            return Err(CallbackError::BlockSize(sealed.len()));
        }
        cbc::Decryptor::<Aes256>::new(&self.key.into(), &self.iv().into())
            .decrypt_padded_vec_mut::<NoPadding>(sealed)
            .map_err(|_| CallbackError::BlockSize(sealed.len()))
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

/// Opens with the current key, then with the previous one (WeChat advises
/// keeping the previous EncodingAESKey after a change, for pushes already
/// sealed under it). When both fail, the current key's error is returned.
pub fn decrypt_with_rotation(
    current: &MessageCrypto,
    previous: Option<&MessageCrypto>,
    encrypt_b64: &str,
) -> Result<String, CallbackError> {
    match (current.decrypt(encrypt_b64), previous) {
        (Ok(message), _) => Ok(message),
        (Err(error), Some(previous)) => previous.decrypt(encrypt_b64).map_err(|_| error),
        (Err(error), None) => Err(error),
    }
}

/// Pads to a multiple of 32 bytes with 1 to 32 bytes, each holding the pad's length.
fn pad(plain: &mut Vec<u8>) {
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    // `pad` is 1..=32, so it fits a byte.
    plain.resize(plain.len() + pad, pad as u8);
}

/// Strips the pad added by [`pad`], checking its length and every byte.
fn unpad(plain: &[u8]) -> Result<&[u8], CallbackError> {
    let &last = plain.last().ok_or(CallbackError::Padding)?;
    let pad = usize::from(last);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CallbackError::Padding);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| b != last) {
        return Err(CallbackError::Padding);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const OTHER_KEY: &str = "BwwRFhsgJSovNDk+Q0hNUldcYWZrcHV6f4SJjpOYnaR";
    const APPID: &str = "wx49f0ab532d5d035a";

    fn crypto() -> MessageCrypto {
        MessageCrypto::new(KEY, APPID).unwrap()
    }

    /// The pad byte a message of `len` bytes gets under [`APPID`].
    fn pad_of(len: usize) -> usize {
        PAD_BLOCK - (RANDOM_LEN + LENGTH_LEN + len + APPID.len()) % PAD_BLOCK
    }

    #[test]
    fn every_pad_length_round_trips_including_pads_above_16() {
        let crypto = crypto();
        for wanted in [1, 16, 17, 31, 32] {
            let len = (0..PAD_BLOCK).find(|&len| pad_of(len) == wanted).unwrap();
            let message = "m".repeat(len);
            let sealed = crypto.encrypt_with_random(&message, [7; 16]);
            let plain = crypto
                .open_blocks(&STANDARD.decode(&sealed).unwrap())
                .unwrap();
            assert!(plain.len().is_multiple_of(PAD_BLOCK));
            assert_eq!(usize::from(*plain.last().unwrap()), wanted, "pad for {len}");
            assert_eq!(crypto.decrypt(&sealed).unwrap(), message);
        }
    }

    #[test]
    fn tampered_or_impossible_pads_are_refused() {
        let crypto = crypto();
        let len = (0..PAD_BLOCK).find(|&len| pad_of(len) == 17).unwrap();
        let sealed = crypto.encrypt_with_random(&"x".repeat(len), [1; 16]);
        let plain = crypto
            .open_blocks(&STANDARD.decode(&sealed).unwrap())
            .unwrap();
        let n = plain.len();
        // One pad byte changed (not the last, which states the length).
        let mut tampered = plain.clone();
        tampered[n - 10] ^= 1;
        // Pads of 0 and 33 are outside 1..=32.
        let mut zero = plain.clone();
        zero[n - 1] = 0;
        let mut too_long = plain.clone();
        too_long[n - 33..].fill(33);
        for bad in [tampered, zero, too_long] {
            let resealed = STANDARD.encode(crypto.seal_blocks(&bad));
            assert_eq!(crypto.decrypt(&resealed), Err(CallbackError::Padding));
        }
    }

    #[test]
    fn length_fields_beyond_the_plaintext_are_refused() {
        let crypto = crypto();
        let sealed = crypto.encrypt_with_random("hello", [2; 16]);
        let mut plain = crypto
            .open_blocks(&STANDARD.decode(&sealed).unwrap())
            .unwrap();
        plain[RANDOM_LEN..RANDOM_LEN + LENGTH_LEN].copy_from_slice(&1000u32.to_be_bytes());
        let resealed = STANDARD.encode(crypto.seal_blocks(&plain));
        assert_eq!(crypto.decrypt(&resealed), Err(CallbackError::Length));
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let crypto = crypto();
        assert_eq!(crypto.decrypt("not base64!"), Err(CallbackError::Base64));
        assert_eq!(crypto.decrypt(""), Err(CallbackError::BlockSize(0)));
        let short = STANDARD.encode([0u8; 16]);
        assert_eq!(crypto.decrypt(&short), Err(CallbackError::BlockSize(16)));
        let ragged = STANDARD.encode([0u8; 40]);
        assert_eq!(crypto.decrypt(&ragged), Err(CallbackError::BlockSize(40)));
        // Whole blocks of garbage: some error, never a panic.
        assert!(crypto.decrypt(&STANDARD.encode([0u8; 64])).is_err());
    }

    #[test]
    fn keys_must_be_43_base64_characters() {
        assert!(MessageCrypto::new(KEY, APPID).is_ok());
        assert_eq!(
            MessageCrypto::new(&KEY[..42], APPID).unwrap_err(),
            CallbackError::InvalidKey
        );
        assert_eq!(
            MessageCrypto::new(&format!("{KEY}="), APPID).unwrap_err(),
            CallbackError::InvalidKey
        );
    }

    #[test]
    fn a_message_for_another_app_is_refused() {
        let sealed = MessageCrypto::new(KEY, "wxother0000000000")
            .unwrap()
            .encrypt("<xml/>");
        assert_eq!(
            crypto().decrypt(&sealed),
            Err(CallbackError::AppIdMismatch {
                found: "wxother0000000000".into()
            })
        );
    }

    #[test]
    fn the_previous_key_opens_what_was_sealed_before_a_rotation() {
        let old = MessageCrypto::new(OTHER_KEY, APPID).unwrap();
        let new = crypto();
        let before = old.encrypt("<xml>before</xml>");
        let after = new.encrypt("<xml>after</xml>");
        assert!(new.decrypt(&before).is_err());
        assert_eq!(
            decrypt_with_rotation(&new, Some(&old), &before).unwrap(),
            "<xml>before</xml>"
        );
        assert_eq!(
            decrypt_with_rotation(&new, Some(&old), &after).unwrap(),
            "<xml>after</xml>"
        );
        assert!(decrypt_with_rotation(&new, None, &before).is_err());
        // Neither key: the current key's error is reported.
        let stranger = MessageCrypto::new(OTHER_KEY, "wxstranger").unwrap();
        assert_eq!(
            decrypt_with_rotation(&new, Some(&stranger), &before),
            new.decrypt(&before)
        );
    }

    #[test]
    fn encrypt_uses_a_fresh_random_prefix() {
        let crypto = crypto();
        assert_ne!(crypto.encrypt("same"), crypto.encrypt("same"));
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert!(!format!("{:?}", crypto()).contains("145, 108"));
        assert!(format!("{:?}", crypto()).contains(APPID));
    }

    proptest! {
        #[test]
        fn any_message_round_trips(message in any::<String>(), random in any::<[u8; 16]>()) {
            let crypto = crypto();
            let sealed = crypto.encrypt_with_random(&message, random);
            prop_assert_eq!(crypto.decrypt(&sealed), Ok(message));
        }
    }
}
