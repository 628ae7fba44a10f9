//! API key secrets: `eddy_` + 40 random base62 characters + 6 base62 characters of CRC32C over
//! the rest. The prefix makes a leaked key recognisable (secret scanners), the checksum lets
//! Eddy reject typos without a lookup. Only a SHA-256 of the secret is stored; keys carry 238
//! bits of randomness, so a fast hash is the right tool (no password stretching needed).

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every generated key.
pub const KEY_PREFIX: &str = "eddy_";
const RANDOM_LEN: usize = 40;
const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_fixed(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn checksum(body: &str) -> String {
    base62_fixed(u64::from(crc32c::crc32c(body.as_bytes())), CHECKSUM_LEN)
}

/// A new random key secret.
pub fn generate_secret() -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect();
    let body = format!("{KEY_PREFIX}{random}");
    let sum = checksum(&body);
    format!("{body}{sum}")
}

/// True for a well-formed Eddy key with a correct checksum.
pub fn is_wellformed(secret: &str) -> bool {
    if secret.len() != KEY_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN
        || !secret.starts_with(KEY_PREFIX)
    {
        return false;
    }
    let (body, sum) = secret.split_at(secret.len() - CHECKSUM_LEN);
    body.bytes()
        .skip(KEY_PREFIX.len())
        .all(|b| b.is_ascii_alphanumeric())
        && checksum(body) == sum
}

/// SHA-256 of a secret: what the catalog stores.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The first characters of a secret, safe to show in listings.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(KEY_PREFIX.len() + 6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_wellformed_and_unique() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(is_wellformed(&a), "{a}");
        assert_eq!(a.len(), 51);
        // One changed character breaks the checksum.
        let mut bad = a.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!is_wellformed(&String::from_utf8(bad).unwrap()));
        assert!(!is_wellformed("eddy_short"));
    }
}
