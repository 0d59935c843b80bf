//! Stable, invertible WeChat-like identifiers derived from `(seed, app, person)`.
//!
//! A million people must fit in memory, so the simulator stores no identifier
//! strings at all. An OpenID is `o` + a 5-character prefix of the app + 22
//! characters that encode a 128-bit block: a kind tag, the app index, the
//! person index and a 72-bit check value, scrambled by a seeded Feistel
//! permutation. Decoding inverts the permutation and verifies the check and
//! the prefix, so the lookup "which person is this openid?" needs no map, and
//! an openid of another app (or a made-up one) is recognised as invalid.

/// The URL-safe alphabet WeChat identifiers are drawn from.
pub(crate) const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What an encoded identifier stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdKind {
    /// A person's OpenID in one app.
    Open = 1,
    /// A person's UnionID across the open platform.
    Union = 2,
    /// The virtual OpenID of a snapshot-page user.
    SnapshotOpen = 3,
    /// The virtual UnionID of a snapshot-page user.
    SnapshotUnion = 4,
}

impl IdKind {
    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Open),
            2 => Some(Self::Union),
            3 => Some(Self::SnapshotOpen),
            4 => Some(Self::SnapshotUnion),
            _ => None,
        }
    }
}

/// One step of splitmix64: a cheap, well-mixed 64-bit hash.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a seed and a list of parts into one value.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(mix(seed), |acc, part| mix(acc ^ mix(*part)))
}

/// A uniform float in `[0, 1)` from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` characters of [`ALPHABET`] drawn from hashes of `(seed, parts)`.
pub(crate) fn chars(seed: u64, parts: &[u64], n: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(n);
    let mut h = hash(seed, parts);
    for i in 0..n {
        if i % 8 == 0 && i > 0 {
            h = mix(h ^ i as u64);
        }
        let len = alphabet.len() as u64;
        out.push(char::from(alphabet[(h % len) as usize]));
        h /= len;
        if h == 0 {
            h = mix(i as u64 ^ seed);
        }
    }
    out
}

/// Encodes and decodes identifiers for one world (one seed).
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    seed: u64,
    keys: [u64; 4],
}

impl Codec {
    /// The codec of the world built from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        let keys = [0u64, 1, 2, 3].map(|i| hash(seed, &[0x0FE1_57E1, i]));
        Self { seed, keys }
    }

    /// The 5-character prefix shared by all identifiers of one app (or of the
    /// open platform, for UnionIDs: `app == u16::MAX`).
    pub(crate) fn prefix(&self, kind: IdKind, app: u16) -> String {
        let space = match kind {
            IdKind::Open | IdKind::SnapshotOpen => 0x0A,
            IdKind::Union | IdKind::SnapshotUnion => 0x0B,
        };
        chars(self.seed, &[space, u64::from(app)], 5, ALPHABET)
    }

    /// The identifier of `(kind, app, person)`: 28 characters, starting with `o`.
    pub(crate) fn encode(&self, kind: IdKind, app: u16, person: u32) -> String {
        let check = hash(self.seed, &[kind as u64, u64::from(app), u64::from(person)]);
        let high = (kind as u64) << 56 | u64::from(app) << 40 | (check >> 40) & 0xFF_FFFF_FFFF;
        let low = u64::from(person) << 32 | (check & 0xFFFF_FFFF);
        let (l, r) = self.permute(high, low);
        let block = u128::from(l) << 64 | u128::from(r);
        let spare = (l ^ r).count_ones() as u128 & 0xF;
        let mut out = String::with_capacity(28);
        out.push('o');
        out.push_str(&self.prefix(kind, app));
        out.push(char::from(ALPHABET[(spare << 2 | block >> 126) as usize]));
        for i in 1..22 {
            let shift = 126 - 6 * i;
            out.push(char::from(ALPHABET[((block >> shift) & 63) as usize]));
        }
        out
    }

    /// The `(kind, app, person)` behind an identifier this codec produced, or
    /// `None` for anything else (wrong length, foreign alphabet, bad check).
    pub(crate) fn decode(&self, id: &str) -> Option<(IdKind, u16, u32)> {
        let bytes = id.as_bytes();
        if bytes.len() != 28 || bytes[0] != b'o' {
            return None;
        }
        let mut block: u128 = 0;
        for (i, b) in bytes[6..].iter().enumerate() {
            let v = ALPHABET.iter().position(|a| a == b)? as u128;
            block = if i == 0 { v & 0b11 } else { block << 6 | v };
        }
        let (l, r) = ((block >> 64) as u64, block as u64);
        let (high, low) = self.unpermute(l, r);
        let kind = IdKind::from_tag((high >> 56) as u8)?;
        let app = (high >> 40) as u16;
        let person = (low >> 32) as u32;
        (self.encode(kind, app, person) == id).then_some((kind, app, person))
    }

    fn round(&self, i: usize, half: u64) -> u64 {
        mix(half ^ self.keys[i])
    }

    fn permute(&self, mut l: u64, mut r: u64) -> (u64, u64) {
        for i in 0..4 {
            let next = l ^ self.round(i, r);
            l = r;
            r = next;
        }
        (l, r)
    }

    fn unpermute(&self, mut l: u64, mut r: u64) -> (u64, u64) {
        for i in (0..4).rev() {
            let prev = r ^ self.round(i, l);
            r = l;
            l = prev;
        }
        (l, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_others() {
        let codec = Codec::new(42);
        let id = codec.encode(IdKind::Open, 3, 999_999);
        assert_eq!(id.len(), 28);
        assert!(id.starts_with('o'));
        assert_eq!(codec.decode(&id), Some((IdKind::Open, 3, 999_999)));
        assert_ne!(id, codec.encode(IdKind::Open, 2, 999_999));
        assert_eq!(Codec::new(43).decode(&id), None);
        let mut tampered = id.clone().into_bytes();
        tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            codec.decode(&String::from_utf8(tampered).unwrap_or_default()),
            None
        );
        assert_eq!(codec.decode("o6_bmjrPTlm6_2sgVt7hMZOPfL2M"), None);
    }

    #[test]
    fn same_app_shares_a_prefix() {
        let codec = Codec::new(7);
        let a = codec.encode(IdKind::Open, 1, 1);
        let b = codec.encode(IdKind::Open, 1, 2);
        assert_eq!(a[..6], b[..6]);
        assert_ne!(a, b);
    }
}
