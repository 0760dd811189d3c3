//! Passwords and SCRAM-SHA-256 verifiers, computed on the client.
//!
//! pgwarden generates every password it hands out ([`generate_password`]: 32
//! characters from 62, about 190 bits) and sends the server only a SCRAM-SHA-256
//! verifier, so the plaintext never reaches the server, its logs or
//! `pg_stat_statements`.
//!
//! The iteration count is a setting ([`ScramIterations`], default 4096 like
//! PostgreSQL's own `scram_iterations`). Setting a password costs the server one
//! PBKDF2 run with the verifier's count (it checks the new secret against the empty
//! password), and every later login costs another: about 5.5 ms per role at 4096 on
//! the reference machine. Stretching protects *guessable* passwords; pgwarden's are
//! random with far more than 128 bits, so a low count does not weaken them and
//! makes grants about ten times faster. Choose 4096 when passwords may be
//! user-chosen (never the case here) or policy demands it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The number of PBKDF2 iterations in generated verifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramIterations(u32);

impl ScramIterations {
    /// PostgreSQL's default.
    pub const DEFAULT: ScramIterations = ScramIterations(4096);

    /// A count from 1 to 2^31 - 1 (PostgreSQL's accepted range).
    pub fn new(n: u32) -> Result<Self, String> {
        if (1..=i32::MAX as u32).contains(&n) {
            Ok(ScramIterations(n))
        } else {
            Err(format!(
                "scram_iterations must be from 1 to {}, got {n}",
                i32::MAX
            ))
        }
    }

    /// The count.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for ScramIterations {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
/// Safe to show: it is what the server stores.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier(String);

impl Verifier {
    /// The verifier text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.0)
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const PASSWORD_CHARS: usize = 32;

/// Random bytes from the operating system.
///
/// # Panics
/// If the operating system has no random source, which nothing can work around.
#[must_use]
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}

/// `n` random characters from `alphabet`, without modulo bias.
#[must_use]
#[cfg_attr(
    not(feature = "testing"),
    allow(unreachable_pub, reason = "public with the testing feature")
)]
pub fn random_string(alphabet: &[u8], n: usize) -> String {
    // Largest multiple of the alphabet size that fits in a byte.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<64>() {
            if (b as usize) < limit && out.len() < n {
                out.push(char::from(alphabet[b as usize % alphabet.len()]));
            }
        }
    }
    out
}

/// A new random password: 32 characters of `[A-Za-z0-9]` (about 190 bits).
#[must_use]
pub fn generate_password() -> SecretString {
    SecretString::from(random_string(ALPHABET, PASSWORD_CHARS))
}

/// The verifier of `password` with a random 16-byte salt.
#[must_use]
pub fn verifier(password: &SecretString, iterations: ScramIterations) -> Verifier {
    verifier_with_salt(password, &random_bytes::<16>(), iterations)
}

/// The verifier of `password` with a given salt (deterministic; for tests and checks).
///
/// # Panics
/// Never: HMAC accepts keys of any length.
#[must_use]
pub(crate) fn verifier_with_salt(
    password: &SecretString,
    salt: &[u8],
    iterations: ScramIterations,
) -> Verifier {
    // As libpq and the server: SASLprep when it applies, else the raw bytes.
    let raw = password.expose_secret();
    let prepared =
        stringprep::saslprep(raw).map_or_else(|_| raw.to_owned(), std::borrow::Cow::into_owned);
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2::<Hmac<Sha256>>(prepared.as_bytes(), salt, iterations.get(), &mut salted)
        .expect("HMAC accepts any key length");
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    Verifier(format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        iterations.get(),
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    ))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres_protocol_byte_for_byte_at_4096() {
        for password in [
            "pgwarden",
            "Zm9vYmFy0123456789abcdefABCDEF12",
            "pässwörd",
            "a b",
        ] {
            let theirs = postgres_protocol::password::scram_sha_256(password.as_bytes());
            // Reuse their random salt to compare the whole verifier.
            let salt_b64 = theirs.split('$').nth(1).unwrap().split(':').nth(1).unwrap();
            let salt = STANDARD.decode(salt_b64).unwrap();
            let ours = verifier_with_salt(
                &SecretString::from(password.to_owned()),
                &salt,
                ScramIterations::DEFAULT,
            );
            assert_eq!(ours.as_str(), theirs, "{password}");
        }
    }

    #[test]
    fn iteration_count_is_in_the_verifier() {
        let v = verifier(&generate_password(), ScramIterations::new(1).unwrap());
        assert!(v.as_str().starts_with("SCRAM-SHA-256$1:"), "{v}");
        assert!(ScramIterations::new(0).is_err());
    }

    #[test]
    fn passwords_are_long_random_and_unbiased_alphanumerics() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.expose_secret().len(), 32);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_alphanumeric()));
        // Every character of the alphabet shows up over many draws.
        let many = random_string(ALPHABET, 20_000);
        for c in ALPHABET {
            assert!(many.as_bytes().contains(c), "{}", char::from(*c));
        }
    }
}
