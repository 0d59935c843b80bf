//! The WeChat server callback (message push), as a pure library: no I/O.
//!
//! WeChat calls an app's server in two ways. A `GET` with `signature`,
//! `timestamp`, `nonce` and `echostr` checks that the server knows the
//! app's callback token: [`verify_signature`] decides, and only on a match
//! may `echostr` be echoed (an endpoint that echoes without checking lets
//! anyone claim the account's callback). A `POST` carries an XML message or
//! event ([`parse_message`]). In safe mode (`encrypt_type=aes`) the body is
//! an envelope ([`parse_encrypted_envelope`]) whose `Encrypt` value is sealed
//! with the app's EncodingAESKey ([`MessageCrypto`]) and signed as
//! `msg_signature` ([`verify_msg_signature`]).
//!
//! The order matters: check `msg_signature` **before** decrypting. The
//! cipher is AES-CBC without a MAC, so the signature (a hash keyed by the
//! secret token) is what authenticates the ciphertext; decrypting unsigned
//! input and answering differently per [`CallbackError`] would hand out a
//! padding oracle. Past a good signature, an endpoint may say what failed:
//! only the token's holder gets that far.
//!
//! WeChat retries a push it got no fast answer to (3 tries, 5 s apart), so
//! handlers deduplicate with [`CallbackMessage::dedup_key`]. Pushes carry no
//! UnionID; it comes from `user/info` afterwards.
//!
//! - `sign`: the SHA-1 signatures and their constant-time checks.
//! - `cipher`: [`MessageCrypto`], the AES-256-CBC envelope with its 32-byte
//!   PKCS#7 padding, and [`decrypt_with_rotation`] for key changes.
//! - `message`: reading the XML bodies ([`parse_message`]) with a real XML reader.
//! - `compose`: writing them as WeChat does ([`event_xml`], the envelopes).

mod cipher;
mod compose;
mod message;
mod sign;

#[cfg(test)]
mod wechatpy_vectors;

pub use cipher::{MessageCrypto, decrypt_with_rotation};
pub use compose::{compatible_envelope_xml, encrypted_envelope_xml, event_xml, reply_envelope_xml};
pub use message::{CallbackMessage, EncryptedEnvelope, parse_encrypted_envelope, parse_message};
pub use sign::{msg_signature, signature, verify_msg_signature, verify_signature};

/// Why a callback body could not be opened or read.
///
/// The variants are for logs and tests; a callback endpoint should answer
/// all of them alike (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The EncodingAESKey is not 43 characters of base64 for a 32-byte key.
    #[error("the EncodingAESKey must be 43 base64 characters encoding 32 bytes")]
    InvalidKey,
    /// The `Encrypt` value is not valid base64.
    #[error("the encrypted message is not valid base64")]
    Base64,
    /// The ciphertext is empty, too short or not a whole number of AES blocks.
    #[error(
        "the encrypted message is {0} bytes, not a whole number of AES blocks of a valid message"
    )]
    BlockSize(usize),
    /// The decrypted padding is not 1 to 32 equal bytes.
    #[error("the decrypted message has invalid padding")]
    Padding,
    /// The length field points outside the decrypted message.
    #[error("the decrypted message's length field is out of bounds")]
    Length,
    /// The message or the appid in the plaintext is not UTF-8.
    #[error("the decrypted message is not UTF-8")]
    Utf8,
    /// The message was sealed for another app.
    #[error("the message was sealed for appid {found:?}, not for this app")]
    AppIdMismatch {
        /// The appid found at the end of the plaintext.
        found: String,
    },
    /// The body is not well-formed XML.
    #[error("the callback body is not well-formed XML: {0}")]
    Xml(String),
    /// A required element is missing or empty.
    #[error("the callback body has no <{0}> element")]
    MissingElement(&'static str),
    /// A numeric element does not hold a number.
    #[error("<{element}> must be an integer, got {value:?}")]
    InvalidNumber {
        /// The element's name.
        element: &'static str,
        /// The text it held.
        value: String,
    },
}
