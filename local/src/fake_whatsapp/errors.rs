//! Meta's errors: the codes the fake answers with ([`ERROR_CODES`]) with their HTTP status and
//! message, and [`MetaError`], an answer in Meta's error envelope (`message`, `type`, `code`,
//! `error_data.details`, `error_subcode` and `fbtrace_id` under `error`), which every refusal
//! of the fake is made of, on the send endpoint and on the control API alike.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::routes::json_response;

/// Meta error codes the fake answers with, as `(code, HTTP status, message)`. Any other injected
/// code is answered with HTTP 400 and a generic message.
pub const ERROR_CODES: &[(u32, u16, &str)] = &[
    (2, 503, "Service temporarily unavailable"),
    (100, 400, "(#100) Invalid parameter"),
    (190, 401, "Error validating access token: Session has expired"),
    (368, 403, "Temporarily blocked for policies violations"),
    (130429, 400, "(#130429) Rate limit hit"),
    (131000, 500, "Something went wrong"),
    (131008, 400, "Required parameter is missing"),
    (131026, 400, "Message undeliverable"),
    (131048, 400, "Spam rate limit hit"),
    (131049, 400, "This message was not delivered to maintain healthy ecosystem engagement."),
    (
        131050,
        400,
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp \
         from your business",
    ),
    (131056, 400, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    (132000, 400, "Number of parameters does not match the expected number of params"),
    (132001, 404, "(#132001) Template name does not exist in the translation"),
    (132012, 400, "(#132012) Parameter format does not match format in the created template"),
    (132015, 400, "(#132015) Template is paused due to low quality so it cannot be sent in a template message"),
    (
        132016,
        400,
        "(#132016) Template has been paused too many times due to low quality and is now permanently disabled",
    ),
];

/// The HTTP status and message the fake answers for an error code.
pub fn error_for(code: u32) -> (StatusCode, Cow<'static, str>) {
    match ERROR_CODES.iter().find(|(c, _, _)| *c == code) {
        Some((_, status, message)) => {
            (StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST), Cow::Borrowed(*message))
        }
        None => (StatusCode::BAD_REQUEST, Cow::Owned(format!("(#{code}) An error occurred"))),
    }
}

/// An answer in Meta's error envelope.
#[derive(Debug)]
pub(super) struct MetaError {
    pub(super) status: StatusCode,
    pub(super) code: u32,
    pub(super) message: Cow<'static, str>,
    pub(super) details: String,
}

impl MetaError {
    /// The error `code`, with the status and message [`error_for`] gives it.
    pub(super) fn new(code: u32, details: impl Into<String>) -> MetaError {
        let (status, message) = error_for(code);
        MetaError { status, code, message, details: details.into() }
    }

    /// Code 100: a parameter is invalid.
    pub(super) fn invalid(details: impl Into<String>) -> MetaError {
        MetaError::new(100, details)
    }

    /// Code 131008: a required parameter is missing.
    pub(super) fn missing(details: impl Into<String>) -> MetaError {
        MetaError::new(131008, details)
    }

    pub(super) fn envelope(&self) -> Value {
        let mut error = Map::new();
        error.insert("message".into(), json!(self.message));
        error.insert("type".into(), json!("OAuthException"));
        error.insert("code".into(), json!(self.code));
        error.insert("error_data".into(), json!({"messaging_product": "whatsapp", "details": self.details}));
        let subcode = match self.code {
            190 => Some(463),
            130429 => Some(2494055),
            _ => None,
        };
        if let Some(subcode) = subcode {
            error.insert("error_subcode".into(), json!(subcode));
        }
        error.insert("fbtrace_id".into(), json!(fbtrace_id()));
        json!({ "error": error })
    }
}

impl IntoResponse for MetaError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.envelope())
    }
}

fn fbtrace_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("A{}", &hex[..22])
}
