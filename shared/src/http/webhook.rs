//! `GET /webhooks/whatsapp`: Meta's verification handshake. `POST /webhooks/whatsapp`: signed
//! notifications (delivery statuses, opt-outs). Public routes: Meta proves itself with the
//! shared secrets, not an API key.

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::adapters::signature::{self, constant_time_eq};
use crate::app::App;
use crate::domain::delivery::parse;
use crate::error::{AppError, AppResult, ErrorKind};
use crate::usecases::statuses;

/// The `event` field of the log line of a refused signature (the alarm's metric filter
/// counts these lines).
pub const SIGNATURE_REJECTED: &str = "webhook_signature_rejected";

/// Answers the challenge when Meta presents the configured verify token.
pub async fn verify(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let secrets = app.webhook_secrets().await?;
    let token_matches = req
        .query("hub.verify_token")
        .is_some_and(|t| constant_time_eq(t.as_bytes(), secrets.verify_token.expose().as_bytes()));
    if req.query("hub.mode") != Some("subscribe") || !token_matches {
        tracing::warn!("webhook verification refused");
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "hub.mode must be subscribe and hub.verify_token must match the configured verify token",
        ));
    }
    let challenge = req.query("hub.challenge").ok_or_else(|| AppError::bad_request("hub.challenge is missing"))?;
    Ok(Reply::text(challenge.to_string()))
}

/// Checks the signature over the exact bytes received, then puts the notification on the
/// status queue (the status applier applies it). A queue failure is answered 503, so that
/// Meta delivers the notification again.
pub async fn receive(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let secrets = app.webhook_secrets().await?;
    let header = req.headers.get(signature::HEADER).map(|v| v.to_str().unwrap_or_default());
    let problem = match header {
        None => Some("the X-Hub-Signature-256 header is missing"),
        Some(h) if !signature::verify(secrets.app_secret.expose().as_bytes(), &req.body, h) => {
            Some("the X-Hub-Signature-256 header does not match the body")
        }
        Some(_) => None,
    };
    if let Some(problem) = problem {
        // The metric filter of the signature-failure alarm reads this line.
        tracing::warn!(event = SIGNATURE_REJECTED, "{problem}");
        return Err(AppError::unauthorized(problem));
    }
    let notification = parse(&req.body).map_err(AppError::bad_request)?;
    let queued = statuses::queue(&app, notification)
        .await
        .map_err(|e| AppError::unavailable("could not queue the notification", e))?;
    tracing::debug!(statuses = queued.statuses, preferences = queued.preferences, "webhook queued");
    Ok(Reply::ok(json!(queued)))
}
