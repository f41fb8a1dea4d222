//! API keys in front of every `/api/...` route.
//!
//! [`check`] is the one check: in AWS the authorizer function runs it before API Gateway
//! invokes a route's function ([`authorizer`]); locally the server runs it before
//! [`crate::api::dispatch`]. The handlers never see a request without a valid key, and stay
//! the same code in both places. Keys are made by [`issue`] (`POST /api/keys` and the
//! bootstrap function alike); only their SHA-256 is stored.

use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::api::App;
use crate::domain::api_key::{ApiKey, KEY_BYTES, MAX_PRESENTED_LEN, NewApiKey, format_key, key_hash};
use crate::domain::{format_time, now};
use crate::error::{ApiError, ApiResult};
use crate::secrets::Secret;
use crate::store::{Db, StoreError};

/// The header that carries the key (`Authorization: Bearer <key>` works too).
pub const API_KEY_HEADER: &str = "x-api-key";

/// A key's `last_used_at` is written at most this often.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

const MISSING: &str = "an API key is required: send it in the X-API-Key header or as Authorization: Bearer <key>";
const NOT_VALID: &str = "the API key is not valid (unknown or revoked)";

/// The key a request presents: `X-API-Key: <key>`, else `Authorization: Bearer <key>`.
pub fn presented_key(headers: &HeaderMap) -> ApiResult<&str> {
    let key = match (headers.get(API_KEY_HEADER), headers.get(http::header::AUTHORIZATION)) {
        (Some(v), _) => v.to_str().map_err(|_| ApiError::unauthorized(NOT_VALID))?.trim(),
        (None, Some(v)) => {
            let v = v.to_str().map_err(|_| ApiError::unauthorized(NOT_VALID))?.trim();
            match v.split_once(' ') {
                Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
                _ => {
                    return Err(ApiError::unauthorized(
                        "the Authorization header must read Bearer <key> (or send the key in X-API-Key)",
                    ));
                }
            }
        }
        (None, None) => return Err(ApiError::unauthorized(MISSING)),
    };
    if key.is_empty() {
        return Err(ApiError::unauthorized(MISSING));
    }
    if key.len() > MAX_PRESENTED_LEN {
        return Err(ApiError::unauthorized(NOT_VALID));
    }
    Ok(key)
}

/// Checks the request's key: 401 when it is missing, unknown or revoked, 503 when the store
/// cannot tell. The lookup is by the key's hash, so no stored value is compared with the key.
pub async fn check(db: &Db, headers: &HeaderMap) -> ApiResult<ApiKey> {
    let hash = key_hash(presented_key(headers)?);
    let found = db.api_key_by_hash(&hash).await.map_err(|e| ApiError::unavailable("could not check the API key", e))?;
    let key = found.ok_or_else(|| ApiError::unauthorized(NOT_VALID))?;
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
pub async fn issue(db: &Db, new: NewApiKey) -> ApiResult<Issued> {
    let mut random = [0u8; KEY_BYTES];
    getrandom::fill(&mut random).map_err(|e| ApiError::unavailable("could not generate a key", e))?;
    store(db, new, format_key(&random)).await
}

/// Registers a key chosen by the operator (the local stack's `LOCAL_API_KEY`); a key that is
/// registered already is left as it is.
pub async fn register(db: &Db, new: NewApiKey, secret: Secret) -> ApiResult<()> {
    let key = secret.expose();
    if key.is_empty() || key.len() > MAX_PRESENTED_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(format!(
            "the key must be 1 to {MAX_PRESENTED_LEN} visible ASCII characters, without spaces"
        )));
    }
    match store(db, new, secret).await {
        Err(e) if e.status != http::StatusCode::CONFLICT => Err(e),
        _ => Ok(()),
    }
}

async fn store(db: &Db, new: NewApiKey, secret: Secret) -> ApiResult<Issued> {
    let key = new.validate(uuid::Uuid::new_v4().to_string(), &secret, &now())?;
    match db.create_api_key(&key, &key_hash(secret.expose())).await {
        Ok(()) => Ok(Issued { key, secret }),
        Err(StoreError::ConditionFailed) => Err(ApiError::conflict("this key is registered already")),
        Err(e) => Err(ApiError::unavailable("could not store the key", e)),
    }
}

/// The authorizer function: API Gateway (HTTP API, payload 2.0, simple responses) hands it
/// each `/api/...` request before the route's function. An HTTP API cannot shape an
/// authorizer's denial (it would be a bare `403 {"message":"Forbidden"}`), so the authorizer
/// passes its verdict to the route's function in the request context instead: the id of a
/// valid key, or the refusal (401 for a missing, unknown or revoked key, 503 when the store
/// cannot tell). The function answers a refusal in the API's envelope before any handler runs
/// ([`verdict`]), and refuses a request without a verdict. The key is never logged.
pub async fn authorizer(app: Arc<App>, event: Value) -> Result<Value, String> {
    let Ok(request) = serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(event) else {
        // serde's message could quote a header value: not logged.
        tracing::warn!("refused: the event is not an HTTP API authorizer request (payload 2.0)");
        return Ok(json!({ "isAuthorized": false }));
    };
    let route = request.route_key.unwrap_or_default();
    let context = match check(&app.db, &request.headers).await {
        Ok(key) => json!({ API_KEY_ID: key.id }),
        Err(e) => {
            tracing::info!(route = %route, status = e.status.as_u16(), reason = %e.message, "refused");
            json!({ REFUSED_STATUS: e.status.as_u16(), REFUSED_MESSAGE: e.message })
        }
    };
    Ok(json!({ "isAuthorized": true, "context": context }))
}

/// The authorizer's verdict in the request context (`requestContext.authorizer.lambda`).
const API_KEY_ID: &str = "api_key_id";
const REFUSED_STATUS: &str = "refused_status";
const REFUSED_MESSAGE: &str = "refused_message";

/// What a route's function makes of the authorizer's verdict: a valid key's id lets the
/// request through; a refusal is answered with its status and message; no verdict at all (the
/// authorizer not attached) is a 401 too, so that a misconfiguration fails closed.
pub fn verdict(context: Option<&std::collections::HashMap<String, Value>>) -> ApiResult<()> {
    let context = context.cloned().unwrap_or_default();
    if context.get(API_KEY_ID).and_then(Value::as_str).is_some_and(|id| !id.is_empty()) {
        return Ok(());
    }
    let status = match context.get(REFUSED_STATUS).and_then(Value::as_u64) {
        Some(503) => http::StatusCode::SERVICE_UNAVAILABLE,
        _ => http::StatusCode::UNAUTHORIZED,
    };
    let message = context.get(REFUSED_MESSAGE).and_then(Value::as_str).unwrap_or(MISSING);
    Err(ApiError::new(status, message))
}

/// The bootstrap function: makes a key without one, for the first key after `sam deploy` (or
/// after every key was revoked). Only callers with `lambda:InvokeFunction` on it in the AWS
/// account can run it; the input is `{"name": "…"}`, the answer the key, once.
pub async fn bootstrap(app: Arc<App>, event: Value) -> Result<Value, String> {
    let new: NewApiKey = crate::api::parse_json(event.to_string().as_bytes()).map_err(|e| e.message)?;
    let issued = issue(&app.db, new).await.map_err(|e| e.message)?;
    tracing::info!(key = %issued.key.id, name = %issued.key.name, "API key created by the bootstrap function");
    Ok(issued.view())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn the_route_function_follows_the_authorizers_verdict_and_fails_closed() {
        let ctx = |v: Value| serde_json::from_value::<std::collections::HashMap<String, Value>>(v).unwrap();
        assert!(verdict(Some(&ctx(json!({ "api_key_id": "k1" })))).is_ok());
        let refused = verdict(Some(&ctx(json!({ "refused_status": 401, "refused_message": NOT_VALID })))).unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.message.as_str()), (401, NOT_VALID));
        let unavailable = verdict(Some(&ctx(json!({ "refused_status": 503, "refused_message": "x" })))).unwrap_err();
        assert_eq!(unavailable.status.as_u16(), 503);
        for missing in [None, Some(ctx(json!({}))), Some(ctx(json!({ "api_key_id": "" })))] {
            let e = verdict(missing.as_ref()).unwrap_err();
            assert_eq!((e.status.as_u16(), e.message.as_str()), (401, MISSING));
        }
    }

    #[test]
    fn the_key_comes_from_either_header() {
        assert_eq!(presented_key(&headers(&[("x-api-key", " wak_1 ")])).unwrap(), "wak_1");
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer wak_2")])).unwrap(), "wak_2");
        assert_eq!(presented_key(&headers(&[("authorization", "bearer  wak_3")])).unwrap(), "wak_3");
        let both = headers(&[("x-api-key", "wak_1"), ("authorization", "Bearer wak_2")]);
        assert_eq!(presented_key(&both).unwrap(), "wak_1");
    }

    #[test]
    fn a_missing_or_malformed_key_is_401_naming_the_headers() {
        for h in [headers(&[]), headers(&[("x-api-key", "  ")]), headers(&[("authorization", "Bearer ")])] {
            let e = presented_key(&h).unwrap_err();
            assert_eq!(e.status, http::StatusCode::UNAUTHORIZED);
            assert!(e.message.contains("X-API-Key") && e.message.contains("Bearer"), "{}", e.message);
        }
        let basic = presented_key(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])).unwrap_err();
        assert!(basic.message.contains("Bearer <key>"), "{}", basic.message);
        let long = "k".repeat(MAX_PRESENTED_LEN + 1);
        assert_eq!(presented_key(&headers(&[("x-api-key", &long)])).unwrap_err().message, NOT_VALID);
    }
}
