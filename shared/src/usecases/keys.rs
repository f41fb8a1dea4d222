//! API keys: [`check`] a presented key (the authorizer in AWS and the local server run it, see
//! [`crate::http::auth`]) and make keys ([`issue`], for `POST /api/keys` and the bootstrap
//! function alike); only a key's SHA-256 is stored.

use serde_json::{Value, json};

use crate::adapters::store::{Db, StoreError};
use crate::domain::api_key::{ApiKey, KEY_BYTES, MAX_PRESENTED_LEN, NewApiKey, format_key, key_hash};
use crate::domain::id::Id;
use crate::domain::secret::Secret;
use crate::domain::{format_time, now};
use crate::error::{AppError, AppResult, ErrorKind};

/// The answer to a key that is unknown or revoked.
pub const NOT_VALID: &str = "the API key is not valid (unknown or revoked)";

/// A key's `last_used_at` is written at most this often.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

/// Checks a presented key: 401 when it is unknown or revoked, 503 when the store
/// cannot tell. The lookup is by the key's hash, so no stored value is compared with the key.
pub async fn check(db: &Db, presented: &str) -> AppResult<ApiKey> {
    let hash = key_hash(presented);
    let found = db.api_key_by_hash(&hash).await.map_err(|e| AppError::unavailable("could not check the API key", e))?;
    let key = found.ok_or_else(|| AppError::unauthorized(NOT_VALID))?;
    let now = chrono::Utc::now();
    let stale_before = format_time(now - LAST_USED_RESOLUTION);
    if key.last_used_at.as_deref().is_none_or(|t| t < stale_before.as_str()) {
        // Bookkeeping only: a failure does not refuse the request.
        if let Err(e) = db.touch_api_key(&hash, &format_time(now), &stale_before).await {
            tracing::warn!(key = %key.id, error = %e, "could not record the API key's use");
        }
    }
    Ok(key)
}

/// A key just made: the record and, this once, the key itself.
pub struct Issued {
    pub key: ApiKey,
    pub secret: Secret,
}

impl Issued {
    /// What creating a key answers: the listing's fields and `key`, shown only here.
    pub fn view(&self) -> Value {
        let mut v = json!(self.key);
        v["key"] = json!(self.secret.expose());
        v
    }
}

/// Makes a new key from 32 bytes of the operating system's CSPRNG and stores its hash.
pub async fn issue(db: &Db, new: NewApiKey) -> AppResult<Issued> {
    let mut random = [0u8; KEY_BYTES];
    getrandom::fill(&mut random).map_err(|e| AppError::unavailable("could not generate a key", e))?;
    store(db, new, format_key(&random)).await
}

/// Registers a key chosen by the operator (the local stack's `LOCAL_API_KEY`); a key that is
/// registered already is left as it is.
pub async fn register(db: &Db, new: NewApiKey, secret: Secret) -> AppResult<()> {
    let key = secret.expose();
    if key.is_empty() || key.len() > MAX_PRESENTED_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(format!(
            "the key must be 1 to {MAX_PRESENTED_LEN} visible ASCII characters, without spaces"
        )));
    }
    match store(db, new, secret).await {
        Err(e) if e.kind != ErrorKind::Conflict => Err(e),
        _ => Ok(()),
    }
}

async fn store(db: &Db, new: NewApiKey, secret: Secret) -> AppResult<Issued> {
    let key = new.validate(Id::generate(), &secret, &now())?;
    match db.create_api_key(&key, &key_hash(secret.expose())).await {
        Ok(()) => Ok(Issued { key, secret }),
        Err(StoreError::ConditionFailed) => Err(AppError::conflict("this key is registered already")),
        Err(e) => Err(AppError::unavailable("could not store the key", e)),
    }
}

/// Revokes a key; it takes effect at once (the authorizer reads keys with consistent reads and
/// its answers are not cached). The key that makes the request may revoke itself.
pub async fn revoke(db: &Db, id: &Id) -> AppResult<()> {
    let not_found = || AppError::not_found(format!("API key {id} not found"));
    let revoked = db.revoke_api_key(id).await.map_err(|e| AppError::unavailable("could not revoke the API key", e))?;
    if revoked { Ok(()) } else { Err(not_found()) }
}
