//! Password hashes for authentication plugins (feature `password`): the
//! `password-file` example plugin verifies them and `cargo xtask passwd`
//! writes them. The format:
//!
//! ```text
//! $pbkdf2-sha256$ITERATIONS$SALT$HASH
//! ```
//!
//! PBKDF2-HMAC-SHA256 (RFC 8018) with ITERATIONS rounds; SALT and HASH in
//! standard base64 (padding optional); verification compares in constant
//! time.
//!
//! ```
//! use sluice_plugin_sdk::password::PasswordHash;
//!
//! let stored = PasswordHash::new(b"secret", b"some salt", 1_000).to_string();
//! let hash = PasswordHash::parse(&stored)?;
//! assert!(hash.verify(b"secret") && !hash.verify(b"Secret"));
//! # Ok::<(), String>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq as _;

/// The scheme name between the first two `$`.
pub const SCHEME: &str = "pbkdf2-sha256";

/// Iterations to hash with unless told otherwise (`cargo xtask passwd`). Chosen so
/// that one verification fits a plugin call's default fuel (50,000,000) and
/// deadline (100 ms) with room to spare; see the password-file plugin's
/// README.
pub const DEFAULT_ITERATIONS: u32 = 2_000;

/// Bytes of salt to generate (`cargo xtask passwd`).
pub const SALT_LEN: usize = 16;

/// Bytes of derived key [`PasswordHash::new`] stores (one SHA-256 block).
pub const HASH_LEN: usize = 32;

/// Standard base64; writes padding, reads it or its absence.
const B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A parsed `$pbkdf2-sha256$...` string.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    // Never print the hash itself (it is a password's equivalent for
    // offline guessing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl PasswordHash {
    /// Hashes `password` with `salt` and `iterations` rounds.
    pub fn new(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut hash = vec![0u8; HASH_LEN];
        derive(password, salt, iterations, &mut hash);
        PasswordHash {
            iterations,
            salt: salt.to_vec(),
            hash,
        }
    }

    /// Parses `$pbkdf2-sha256$ITERATIONS$SALT$HASH`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('$');
        let (Some(""), Some(scheme), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(format!(
                "expected ${SCHEME}$ITERATIONS$SALT$HASH, not {} `$`-separated fields",
                text.split('$').count()
            ));
        };
        if scheme != SCHEME {
            return Err(format!(
                "unsupported hash scheme {scheme:?} (only {SCHEME:?})"
            ));
        }
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("invalid iteration count {iterations:?}"))?;
        let salt = B64
            .decode(salt)
            .map_err(|e| format!("invalid base64 salt: {e}"))?;
        let hash = B64
            .decode(hash)
            .map_err(|e| format!("invalid base64 hash: {e}"))?;
        if salt.len() < 8 {
            return Err(format!("salt too short ({} bytes, at least 8)", salt.len()));
        }
        if !(16..=64).contains(&hash.len()) {
            return Err(format!("hash of {} bytes (16 to 64 expected)", hash.len()));
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` is the one hashed, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let mut candidate = vec![0u8; self.hash.len()];
        derive(password, &self.salt, self.iterations, &mut candidate);
        candidate.ct_eq(&self.hash).into()
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "${SCHEME}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }
}

fn derive(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_through_text() {
        let h = PasswordHash::new(b"pw", b"saltsaltsalt", 3);
        let parsed = PasswordHash::parse(&h.to_string()).expect("parses");
        assert_eq!(parsed, h);
        assert!(parsed.verify(b"pw"));
        assert!(!parsed.verify(b"pw2"));
        // Padding is optional.
        let unpadded = h.to_string().replace('=', "");
        assert_eq!(PasswordHash::parse(&unpadded).expect("parses"), h);
    }

    #[test]
    fn rfc_7914_pbkdf2_sha256_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1), 64 bytes.
        let expected = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                        49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783";
        let mut out = [0u8; 64];
        derive(b"passwd", b"salt", 1, &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        // The same through the text format (64-byte hashes are accepted).
        let mut h = PasswordHash::new(b"passwd", b"saltsalt", 1);
        h.salt = b"salt".to_vec();
        h.hash = out.to_vec();
        assert!(h.verify(b"passwd"));
    }

    #[test]
    fn malformed_strings_say_what_is_wrong() {
        let bad = [
            ("pbkdf2-sha256$1$c2FsdHNhbHQ$aGFzaA", "fields"),
            ("$bcrypt$1$c2FsdHNhbHQ$aGFzaA", "unsupported"),
            (
                "$pbkdf2-sha256$0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "iteration",
            ),
            ("$pbkdf2-sha256$1$!!$aGFzaGhhc2hoYXNoaGFzaA", "salt"),
            (
                "$pbkdf2-sha256$1$c2Fs$aGFzaGhhc2hoYXNoaGFzaA",
                "salt too short",
            ),
            ("$pbkdf2-sha256$1$c2FsdHNhbHQ$aGFzaA", "hash of"),
        ];
        for (text, why) in bad {
            let e = PasswordHash::parse(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
