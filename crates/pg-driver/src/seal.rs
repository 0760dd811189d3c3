//! Sealed ledger records: only pgwarden can write them, only pgwarden can read them.
//!
//! The ledger lives in role comments, and on PostgreSQL 15 and earlier any role with
//! `CREATEROLE` can rewrite a role's comment, create roles with pgwarden's names and
//! grant itself membership in them; on every version, comments are readable by every
//! user of the instance (`pg_shdescription`). So every record pgwarden writes is
//! sealed with an AEAD (XChaCha20-Poly1305) under a [`LedgerKey`] that only pgwarden
//! holds (kept in the secret store beside the connector's credentials):
//!
//! - a record that does not open is **drift**: reported, never acted on;
//! - the associated data binds a record to the role it was written on — its oid and
//!   name — so a comment copied onto another role, or onto a role recreated under a
//!   dropped role's name, does not open;
//! - the content (who has access to what, and why) is no longer readable by others.
//!
//! A comment reads `pgwarden:2:<tags>:<base64>`. The tags are short keyed hashes of
//! the grant ids the record holds ([`LedgerKey::lookup_tag`]), so a grant's record is
//! recognised without opening every record (an ephemeral role is also named by its
//! grant's tag); they reveal nothing of the ids.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::KeyInit;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::scram::random_bytes;

/// The prefix of every sealed comment (format 2; format 1 was plain JSON).
pub(crate) const SEALED_PREFIX: &str = "pgwarden:2:";

/// The key that seals and authenticates pgwarden's ledger records: 32 random bytes,
/// written as base64. Every integration that manages the same instance must hold the
/// same key (the marker and the privilege roles are shared). `Debug` never shows it.
#[derive(Clone)]
pub struct LedgerKey(Arc<Keys>);

/// The master key and the two keys derived from it (zeroized on drop).
struct Keys {
    master: SecretBox<[u8; 32]>,
    seal: SecretBox<[u8; 32]>,
    lookup: SecretBox<[u8; 32]>,
}

impl fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LedgerKey(<redacted>)")
    }
}

/// A ledger key's text is not 32 bytes of base64.
#[derive(Debug, thiserror::Error)]
#[error(
    "the ledger key is not valid: expected 32 bytes in base64 (44 characters, e.g. from `openssl rand -base64 32`)"
)]
pub struct LedgerKeyError;

fn hmac32(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl LedgerKey {
    /// A new random key.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_bytes(random_bytes::<32>())
    }

    /// The key from its base64 text (padding optional, surrounding space ignored).
    pub fn from_base64(text: &str) -> Result<Self, LedgerKeyError> {
        let bytes = STANDARD_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|_| LedgerKeyError)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| LedgerKeyError)?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key's base64 text, to store it.
    #[must_use]
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.master.expose_secret()))
    }

    fn from_bytes(master: [u8; 32]) -> Self {
        LedgerKey(Arc::new(Keys {
            seal: SecretBox::new(Box::new(hmac32(&master, b"pgwarden ledger seal v2"))),
            lookup: SecretBox::new(Box::new(hmac32(&master, b"pgwarden ledger lookup v2"))),
            master: SecretBox::new(Box::new(master)),
        }))
    }

    /// The lookup tag of a grant id: 16 hex digits of a keyed hash.
    #[must_use]
    pub fn lookup_tag(&self, grant_id: &str) -> String {
        hmac32(self.0.lookup.expose_secret(), grant_id.as_bytes())[..8]
            .iter()
            .fold(String::with_capacity(16), |mut out, b| {
                let _ = write!(out, "{b:02x}");
                out
            })
    }

    /// Seals `record` (JSON) for the role with `oid` and `name`, with lookup `tags`.
    #[must_use]
    pub fn seal(&self, oid: u32, name: &str, tags: &[String], record: &str) -> String {
        let tags = tags.join(",");
        let nonce = random_bytes::<24>();
        let aad = associated_data(oid, name, &tags);
        let cipher = XChaCha20Poly1305::new(self.0.seal.expose_secret().into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: record.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption of an in-memory buffer cannot fail"));
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{tags}:{}", STANDARD_NO_PAD.encode(blob))
    }

    /// Opens a comment sealed for the role with `oid` and `name`: the record's JSON, or
    /// `None` when the comment is not a sealed record, was sealed with another key, for
    /// another role, or was altered.
    #[must_use]
    pub fn open(&self, oid: u32, name: &str, comment: &str) -> Option<String> {
        let rest = comment.strip_prefix(SEALED_PREFIX)?;
        let (tags, body) = rest.split_once(':')?;
        let blob = STANDARD_NO_PAD.decode(body).ok()?;
        if blob.len() < 24 {
            return None;
        }
        let (nonce, sealed) = blob.split_at(24);
        let aad = associated_data(oid, name, tags);
        let cipher = XChaCha20Poly1305::new(self.0.seal.expose_secret().into());
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

fn associated_data(oid: u32, name: &str, tags: &str) -> Vec<u8> {
    format!("pgwarden ledger v2\0{oid}\0{name}\0{tags}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_opens_only_with_its_key_role_and_oid() {
        let key = LedgerKey::generate();
        let tags = vec![key.lookup_tag("g1")];
        let sealed = key.seal(4242, "pgw_alice_x1", &tags, r#"{"a":1}"#);
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(
            !sealed.contains("\"a\""),
            "the record is not readable: {sealed}"
        );
        assert_eq!(
            key.open(4242, "pgw_alice_x1", &sealed).as_deref(),
            Some(r#"{"a":1}"#)
        );
        // Another oid (a role recreated under the same name), another name, another key.
        assert_eq!(key.open(4243, "pgw_alice_x1", &sealed), None);
        assert_eq!(key.open(4242, "pgw_mallory", &sealed), None);
        assert_eq!(
            LedgerKey::generate().open(4242, "pgw_alice_x1", &sealed),
            None
        );
        // Altered tags or body.
        let retagged = sealed.replacen(&tags[0], &key.lookup_tag("g2"), 1);
        assert_eq!(key.open(4242, "pgw_alice_x1", &retagged), None);
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open(4242, "pgw_alice_x1", &String::from_utf8(flipped).unwrap()),
            None
        );
        // Plain JSON (format 1) and foreign comments are not records.
        assert_eq!(key.open(4242, "pgw_alice_x1", r#"{"pgwarden":1}"#), None);
        assert_eq!(key.open(4242, "pgw_alice_x1", "analysts team"), None);
    }

    #[test]
    fn keys_round_trip_as_base64_and_never_print() {
        let key = LedgerKey::generate();
        let text = key.to_base64();
        let again = LedgerKey::from_base64(text.expose_secret()).unwrap();
        let sealed = key.seal(1, "r", &[], "{}");
        assert_eq!(again.open(1, "r", &sealed).as_deref(), Some("{}"));
        assert_eq!(key.lookup_tag("g"), again.lookup_tag("g"));
        assert_ne!(key.lookup_tag("g"), key.lookup_tag("h"));
        assert_eq!(format!("{key:?}"), "LedgerKey(<redacted>)");
        assert!(LedgerKey::from_base64("c2hvcnQ=").is_err());
        assert!(LedgerKey::from_base64("not base64!").is_err());
    }
}
