//! `Idempotency-Key` on the routes that create or start something (`POST /api/campaigns`,
//! `…/recipients/import`, `…/start`, `…/test`): a client on a flaky network sends its request
//! again with the same key and gets the first answer, and the work is done once.
//!
//! The first request with a key claims it (with a fingerprint of its body) for a day and
//! keeps its answer; a repeat within the day gets that answer again (`Idempotent-Replayed:
//! true`), without running. A repeat while the first is still running is a 409; the same key
//! with another body on the route is a 422. An answer of 5xx is not kept (the request may be
//! tried again with the key), nor is one of a request whose handler never finished: its claim
//! runs out after [`LOCK_SECONDS`] and a repeat then runs it.

use std::sync::Arc;

use http::StatusCode;
use sha2::{Digest, Sha256};

use super::{ApiRequest, Route, respond};
use crate::adapters::store::Claimed;
use crate::app::App;
use crate::error::{AppError, AppResult};

pub const HEADER: &str = "idempotency-key";
/// How long an answer is kept: a repeat after it is a new request.
pub const KEEP_SECONDS: i64 = 24 * 3600;
/// How long a request holds its key without an answer (more than any route runs).
pub const LOCK_SECONDS: i64 = 60;
/// The longest key taken.
const KEY_CHARS: usize = 255;

/// The key of the request, if it has one (a 400 when it is not a usable key).
pub fn key_of(req: &ApiRequest) -> AppResult<Option<String>> {
    let Some(value) = req.headers.get(HEADER) else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::bad_request(format!(
            "Idempotency-Key must be 1 to {KEY_CHARS} visible ASCII characters (a UUID is a good key)"
        )));
    }
    Ok(Some(key.to_string()))
}

/// Runs the request once per key: the first time through the route's handler, later from the
/// answer kept.
pub async fn once(app: Arc<App>, route: &Route, path: &str, key: String, req: ApiRequest) -> http::Response<String> {
    let slot = format!("{} {path}", route.method);
    let mut hash = Sha256::new();
    for part in [slot.as_bytes(), req.content_type().unwrap_or_default().as_bytes(), &req.body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let fingerprint = hex::encode(hash.finalize());
    let now = chrono::Utc::now().timestamp();
    let claimed = app.db.claim_key(&key, &slot, &fingerprint, now, now + LOCK_SECONDS, now + KEEP_SECONDS).await;
    match claimed {
        Err(e) => respond(Err(app.store_err("could not check the Idempotency-Key")(e))),
        Ok(Claimed::Done { status, body }) => replayed(status, body),
        Ok(Claimed::InProgress) => respond(Err(AppError::conflict(
            "a request with this Idempotency-Key is still being handled; send it again in a moment for its answer",
        ))),
        Ok(Claimed::OtherRequest) => respond(Err(AppError::invalid(format!(
            "Idempotency-Key {key} was used for another request to {slot} (another body) in the last 24 hours; \
             use a new key for a new request"
        )))),
        Ok(Claimed::New) => {
            let answer = respond((route.handler)(app.clone(), req).await);
            let kept = if answer.status().is_server_error() {
                app.db.release_key(&key, &slot).await
            } else {
                app.db.keep_answer(&key, &slot, answer.status().as_u16(), answer.body()).await
            };
            if let Err(e) = kept {
                // The work is done: answer it; a repeat finds the claim and waits for it to run out.
                tracing::warn!(error = %e, "the answer under an Idempotency-Key could not be kept");
            }
            answer
        }
    }
}

/// The kept answer of an earlier request with the key.
fn replayed(status: u16, body: String) -> http::Response<String> {
    let mut answer = http::Response::new(body);
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = answer.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    headers.insert("idempotent-replayed", http::HeaderValue::from_static("true"));
    answer
}
