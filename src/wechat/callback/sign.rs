//! The callback signatures: SHA-1 over the sorted, concatenated parts.
//!
//! WeChat signs the `GET` verification with the app's token, the timestamp
//! and the nonce, and a safe-mode push with those plus the `Encrypt` value.
//! The parts are sorted as byte strings (what every SDK does: the values are
//! ASCII in practice), joined without a separator, hashed with SHA-1 and
//! written as lowercase hex. Checks compare in constant time so that a
//! caller cannot learn a valid signature one byte at a time.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Hex SHA-1 of the sorted, concatenated parts.
fn sorted_sha1(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts.iter() {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `given` spells `expected` (lowercase hex), ignoring hex case,
/// compared in constant time.
fn hex_matches(expected: &str, given: &str) -> bool {
    let given = given.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The signature of a verification request:
/// `hex(sha1(concat(sort([token, timestamp, nonce]))))`.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce])
}

/// The signature of a safe-mode push or reply:
/// `hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1(&mut [token, timestamp, nonce, encrypt])
}

/// Whether `signature` is the signature of a verification request for
/// `token`; hex of either case is accepted; the comparison is constant-time.
pub fn verify_signature(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    hex_matches(&self::signature(token, timestamp, nonce), signature)
}

/// Whether `msg_signature` signs `encrypt` for `token`; hex of either case
/// is accepted; the comparison is constant-time.
pub fn verify_msg_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    msg_signature: &str,
) -> bool {
    hex_matches(
        &self::msg_signature(token, timestamp, nonce, encrypt),
        msg_signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_signatures_match_the_documented_vectors() {
        // Both vectors from WECHAT.md ("Server callback").
        let first = signature("AAAAA", "1714037059", "486452656");
        assert_eq!(first, "899cf89e464efb63f54ddac96b0a0a235f53aa78");
        let second = signature("test", "1410685589", "test");
        assert_eq!(second, "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
    }

    #[test]
    fn verification_accepts_either_hex_case_and_nothing_else() {
        let good = "899cf89e464efb63f54ddac96b0a0a235f53aa78";
        assert!(verify_signature("AAAAA", "1714037059", "486452656", good));
        assert!(verify_signature(
            "AAAAA",
            "1714037059",
            "486452656",
            &good.to_ascii_uppercase()
        ));
        // Another nonce, another token, a truncated or empty signature.
        assert!(!verify_signature("AAAAA", "1714037059", "486452657", good));
        assert!(!verify_signature("AAAAB", "1714037059", "486452656", good));
        assert!(!verify_signature(
            "AAAAA",
            "1714037059",
            "486452656",
            &good[..39]
        ));
        assert!(!verify_signature("AAAAA", "1714037059", "486452656", ""));
    }

    #[test]
    fn the_order_of_the_parts_does_not_matter() {
        assert_eq!(signature("b", "a", "c"), signature("c", "b", "a"));
        assert_eq!(
            msg_signature("t", "1", "n", "e"),
            msg_signature("e", "n", "1", "t")
        );
    }

    #[test]
    fn message_signatures_match_wechatpy() {
        // From wechatpy's tests/test_crypto.py (test_decrypt_message).
        let encrypt = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        let expected = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d";
        assert_eq!(
            msg_signature("123456", "1411525903", "461056294", encrypt),
            expected
        );
        assert!(verify_msg_signature(
            "123456",
            "1411525903",
            "461056294",
            encrypt,
            expected
        ));
        assert!(!verify_msg_signature(
            "123456",
            "1411525903",
            "461056294",
            &encrypt.replace('R', "S"),
            expected
        ));
    }
}
