//! The API key at the edge: every `/api/...` request's key is read from its headers and
//! checked ([`check_request`]) before a handler runs. In AWS the authorizer function does it
//! ([`authorizer`]) and the route's function follows its verdict ([`verdict`]); locally the
//! server runs the same check before [`super::dispatch`]. The handlers never see a request
//! without a valid key and stay the same code in both places. Also the bootstrap function
//! ([`bootstrap`]), which makes the first key.

use std::sync::Arc;

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use http::HeaderMap;
use serde_json::{Value, json};

use super::{parse_json, status_of};
use crate::app::App;
use crate::domain::api_key::{ApiKey, MAX_PRESENTED_LEN, NewApiKey};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::usecases::keys::{self, NOT_VALID};

/// The header that carries the key (`Authorization: Bearer <key>` works too).
pub const API_KEY_HEADER: &str = "x-api-key";

const MISSING: &str = "an API key is required: send it in the X-API-Key header or as Authorization: Bearer <key>";

/// The key a request presents: `X-API-Key: <key>`, else `Authorization: Bearer <key>`.
pub fn presented_key(headers: &HeaderMap) -> AppResult<&str> {
    let key = match (headers.get(API_KEY_HEADER), headers.get(http::header::AUTHORIZATION)) {
        (Some(v), _) => v.to_str().map_err(|_| AppError::unauthorized(NOT_VALID))?.trim(),
        (None, Some(v)) => {
            let v = v.to_str().map_err(|_| AppError::unauthorized(NOT_VALID))?.trim();
            match v.split_once(' ') {
                Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
                _ => {
                    return Err(AppError::unauthorized(
                        "the Authorization header must read Bearer <key> (or send the key in X-API-Key)",
                    ));
                }
            }
        }
        (None, None) => return Err(AppError::unauthorized(MISSING)),
    };
    if key.is_empty() {
        return Err(AppError::unauthorized(MISSING));
    }
    if key.len() > MAX_PRESENTED_LEN {
        return Err(AppError::unauthorized(NOT_VALID));
    }
    Ok(key)
}

/// Checks the key the request presents: 401 when it is missing, malformed, unknown or
/// revoked, 503 when the store cannot tell.
pub async fn check_request(app: &App, headers: &HeaderMap) -> AppResult<ApiKey> {
    keys::check(&app.db, presented_key(headers)?).await
}

/// The authorizer function: API Gateway (HTTP API, payload 2.0, simple responses) hands it
/// each `/api/...` request before the route's function. An HTTP API cannot shape an
/// authorizer's denial (it would be a bare `403 {"message":"Forbidden"}`), so the authorizer
/// passes its verdict to the route's function in the request context instead: the id of a
/// valid key, or the refusal (401 for a missing, unknown or revoked key, 503 when the store
/// cannot tell). The function answers a refusal in the API's envelope before any handler runs
/// ([`verdict`]), and refuses a request without a verdict. The key is never logged.
pub async fn authorizer(app: Arc<App>, event: Value) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, String> {
    let Ok(request) = serde_json::from_value::<ApiGatewayV2CustomAuthorizerV2Request>(event) else {
        // serde's message could quote a header value: not logged.
        tracing::warn!("refused: the event is not an HTTP API authorizer request (payload 2.0)");
        return Ok(answer(false, json!({})));
    };
    let route = request.route_key.unwrap_or_default();
    let context = match check_request(&app, &request.headers).await {
        Ok(key) => json!({ API_KEY_ID: key.id }),
        Err(e) => {
            tracing::info!(route = %route, status = status_of(e.kind).as_u16(), reason = %e.message, "refused");
            json!({ REFUSED_STATUS: status_of(e.kind).as_u16(), REFUSED_MESSAGE: e.message })
        }
    };
    Ok(answer(true, context))
}

/// The authorizer's answer in the simple format (payload 2.0).
fn answer(is_authorized: bool, context: Value) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let mut answer = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    answer.is_authorized = is_authorized;
    answer.context = context;
    answer
}

/// The authorizer's verdict in the request context (`requestContext.authorizer.lambda`).
const API_KEY_ID: &str = "api_key_id";
const REFUSED_STATUS: &str = "refused_status";
const REFUSED_MESSAGE: &str = "refused_message";

/// What a route's function makes of the authorizer's verdict: a valid key's id lets the
/// request through; a refusal is answered with its status and message; no verdict at all (the
/// authorizer not attached) is a 401 too, so that a misconfiguration fails closed.
pub fn verdict(context: Option<&std::collections::HashMap<String, Value>>) -> AppResult<()> {
    let context = context.cloned().unwrap_or_default();
    if context.get(API_KEY_ID).and_then(Value::as_str).is_some_and(|id| !id.is_empty()) {
        return Ok(());
    }
    let kind = match context.get(REFUSED_STATUS).and_then(Value::as_u64) {
        Some(503) => ErrorKind::Unavailable,
        _ => ErrorKind::Unauthorized,
    };
    let message = context.get(REFUSED_MESSAGE).and_then(Value::as_str).unwrap_or(MISSING);
    Err(AppError::new(kind, message))
}

/// The bootstrap function: makes a key without one, for the first key after `sam deploy` (or
/// after every key was revoked). Only callers with `lambda:InvokeFunction` on it in the AWS
/// account can run it; the input is `{"name": "…"}`, the answer the key, once.
pub async fn bootstrap(app: Arc<App>, event: Value) -> Result<Value, String> {
    let new: NewApiKey = parse_json(event.to_string().as_bytes()).map_err(|e| e.message)?;
    let issued = keys::issue(&app.db, new).await.map_err(|e| e.message)?;
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
        assert_eq!((status_of(refused.kind).as_u16(), refused.message.as_str()), (401, NOT_VALID));
        let unavailable = verdict(Some(&ctx(json!({ "refused_status": 503, "refused_message": "x" })))).unwrap_err();
        assert_eq!(status_of(unavailable.kind).as_u16(), 503);
        for missing in [None, Some(ctx(json!({}))), Some(ctx(json!({ "api_key_id": "" })))] {
            let e = verdict(missing.as_ref()).unwrap_err();
            assert_eq!((status_of(e.kind).as_u16(), e.message.as_str()), (401, MISSING));
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
            assert_eq!(e.kind, ErrorKind::Unauthorized);
            assert!(e.message.contains("X-API-Key") && e.message.contains("Bearer"), "{}", e.message);
        }
        let basic = presented_key(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])).unwrap_err();
        assert!(basic.message.contains("Bearer <key>"), "{}", basic.message);
        let long = "k".repeat(MAX_PRESENTED_LEN + 1);
        assert_eq!(presented_key(&headers(&[("x-api-key", &long)])).unwrap_err().message, NOT_VALID);
    }
}
