//! API keys: what a key looks like, how it is stored (only its SHA-256), and what a listing
//! shows of it (never the key).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::id::Id;
use super::{Timestamp, required_text};
use crate::domain::secret::Secret;
use crate::error::Invalid;

/// Every key starts with this, so that a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "wak_";
/// Random bytes in a key (from the operating system's CSPRNG): 256 bits.
pub const KEY_BYTES: usize = 32;
/// Characters of a key kept for listings: `wak_` and 8 hex digits (32 of the 256 bits), enough
/// to tell keys apart, far too few to guess the rest. A shorter key chosen by an operator
/// shows a quarter of itself at most.
pub const SHOWN_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;
/// The longest key presented that is looked up at all (keys are 68 characters; a development
/// key may be any length up to this).
pub const MAX_PRESENTED_LEN: usize = 256;

/// An API key as stored and listed: no key, no hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: Timestamp,
    /// When the key last opened a request (updated at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
}

impl NewApiKey {
    /// The key record for `key` (a fresh one, or a development key given by the operator).
    pub fn validate(self, id: Id, key: &Secret, now: &Timestamp) -> Result<ApiKey, Invalid> {
        Ok(ApiKey {
            id,
            name: required_text("name", &self.name, 100)?,
            prefix: key.expose().chars().take(SHOWN_PREFIX_LEN.min(key.expose().chars().count() / 4)).collect(),
            created_at: now.clone(),
            last_used_at: None,
        })
    }
}

/// A key from random bytes: `wak_` and 64 hex digits.
pub fn format_key(random: &[u8; KEY_BYTES]) -> Secret {
    Secret::from(format!("{KEY_PREFIX}{}", hex::encode(random)))
}

/// What the table keeps of a key: its SHA-256, in hex. A key has 256 random bits, so a plain
/// hash (no salt, no slow hash) is enough: nobody can search that space.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_hex_and_only_their_start_is_kept() {
        let key = format_key(&[0xab; KEY_BYTES]);
        assert_eq!(key.expose().len(), 4 + 64);
        assert!(key.expose().starts_with("wak_abab"));
        let record = NewApiKey { name: " ci ".into() }.validate("id".into(), &key, &"t".into()).unwrap();
        assert_eq!((record.name.as_str(), record.prefix.as_str()), ("ci", "wak_abababab"));
        let shown = serde_json::to_string(&record).unwrap();
        assert!(!shown.contains(&key.expose()[SHOWN_PREFIX_LEN..]), "{shown}");
        assert!(
            NewApiKey { name: "  ".into() }.validate("id".into(), &key, &"t".into()).unwrap_err().0.contains("name")
        );
        let short =
            NewApiKey { name: "dev".into() }.validate("id".into(), &"local-dev-key-01".into(), &"t".into()).unwrap();
        assert_eq!(short.prefix, "loca");
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(key_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_ne!(key_hash("wak_1"), key_hash("wak_2"));
    }
}
