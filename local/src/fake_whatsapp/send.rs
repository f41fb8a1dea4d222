//! How a send is decided, answered and recorded: the checks in the order Meta makes them (path,
//! token, body, template), then the injected fault rules and the fault numbers; the reply (Meta's
//! success shape, its error envelope or an ambiguous answer) and the delay it comes after; the
//! status webhooks queued for an accepted send; and the request recorded. All of it happens under
//! one lock, so concurrent sends see a consistent state.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::errors::MetaError;
use super::faults::{FakeAnswer, Fault, GATEWAY_502_BODY, GATEWAY_504_BODY, fault_number, take_matching};
use super::message::{Message, check_against_template, parse_message, wa_id};
use super::now_ms;
use super::routes::{MAX_BODY_BYTES, json_response};
use super::state::{Data, FakeState, Recorded};
use super::webhooks::{LateFailure, SentMessage};

/// What a send is answered with, after `delay`.
pub(super) struct Outcome {
    pub(super) delay: Duration,
    pub(super) reply: Reply,
}

pub(super) enum Reply {
    Json(StatusCode, Value),
    Html(StatusCode, &'static str),
    /// No complete answer: the connection is broken.
    Reset,
}

impl Reply {
    /// The HTTP status recorded for it: 0 when none is answered.
    fn recorded_status(&self) -> u16 {
        match self {
            Reply::Json(status, _) | Reply::Html(status, _) => status.as_u16(),
            Reply::Reset => 0,
        }
    }

    pub(super) fn into_response(self) -> Response {
        match self {
            Reply::Json(status, body) => json_response(status, &body),
            Reply::Html(status, body) => (status, [(header::CONTENT_TYPE, "text/html")], body).into_response(),
            Reply::Reset => broken_response(),
        }
    }
}

/// 200 headers with a body that fails at once: hyper then drops the connection rather than
/// finish the answer, so the client sees an error instead of a response it could trust.
fn broken_response() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset"))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(failing)).into_response()
}

/// A send that passed every check and got no injected error: the `contacts` entry of its
/// answer, the failure to report later by webhook, or the ambiguous answer it gets instead.
struct Passed {
    input: String,
    wa_id: String,
    failure: Option<LateFailure>,
    ambiguous: Option<FakeAnswer>,
}

impl Passed {
    /// Meta's success shape, with these `messages`.
    fn success(&self, messages: Value) -> Reply {
        let answer = json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": self.input, "wa_id": self.wa_id}],
            "messages": messages,
        });
        Reply::Json(StatusCode::OK, answer)
    }

    fn ambiguous_reply(&self, answer: FakeAnswer) -> Reply {
        match answer {
            FakeAnswer::NoWamid => self.success(json!([])),
            FakeAnswer::Gateway502 => Reply::Html(StatusCode::BAD_GATEWAY, GATEWAY_502_BODY),
            FakeAnswer::Gateway504 => Reply::Html(StatusCode::GATEWAY_TIMEOUT, GATEWAY_504_BODY),
            FakeAnswer::Reset => Reply::Reset,
        }
    }
}

/// A decided send's reply, with what its record keeps.
struct Answered {
    reply: Reply,
    error_code: Option<u32>,
    wamid: Option<String>,
    /// Whether status webhooks were queued for it.
    statuses_queued: bool,
}

impl FakeState {
    /// Decides the answer to a send, consumes the matching fault rule and records the request,
    /// all under one lock so concurrent sends see a consistent state.
    pub(super) fn handle_send(
        &self,
        version: String,
        phone_number_id: String,
        headers: &HeaderMap,
        body: Result<Bytes, ()>,
    ) -> Outcome {
        // Timed as it arrives, not once the lock is had: a reader cloning the records (a
        // benchmark measuring) holds it long enough to bunch the sends waiting behind it.
        let arrived_ms = now_ms();
        let token = bearer_token(headers);
        let json: Option<Value> = body.as_ref().ok().and_then(|bytes| serde_json::from_slice(bytes).ok());

        let mut data = self.lock();
        let mut delay = data.config.draw_latency_ms();
        let decided =
            data.decide(&version, &phone_number_id, token.as_deref(), body.is_ok(), json.as_ref(), &mut delay);
        let delay = Duration::from_millis(delay);
        let answered = data.answer(decided, &phone_number_id, json.as_ref(), delay);
        let recorded = Recorded {
            // Numbered and timed by `Data::record`.
            seq: 0,
            at_ms: 0,
            version,
            phone_number_id,
            to: sent_to(json.as_ref()),
            token,
            body: json.unwrap_or(Value::Null),
            status: answered.reply.recorded_status(),
            error_code: answered.error_code,
            wamid: answered.wamid,
        };
        tracing::info!(
            phone_number_id = %recorded.phone_number_id,
            to = %recorded.to.as_deref().unwrap_or("-"),
            status = recorded.status,
            code = recorded.error_code,
            "fake WhatsApp send"
        );
        data.record(recorded, arrived_ms);
        drop(data);
        if answered.statuses_queued {
            self.wake_webhook_worker();
        }
        Outcome { delay, reply: answered.reply }
    }
}

impl Data {
    /// The checks in the order Meta makes them: path, token, body, template; then the injected
    /// faults and the fault numbers (only well-formed sends reach those).
    fn decide(
        &mut self,
        version: &str,
        phone_number_id: &str,
        token: Option<&str>,
        body_read: bool,
        json: Option<&Value>,
        delay: &mut u64,
    ) -> Result<Passed, MetaError> {
        if !valid_version(version) {
            return Err(MetaError::invalid(format!("unknown Graph API version {version:?} (expected like v21.0)")));
        }
        self.check_token(phone_number_id, token)?;
        let message = self.check_body(body_read, json)?;
        self.apply_faults(&message, delay)
    }

    /// A bearer token, the registered one when the phone number id has an account (190).
    fn check_token(&self, phone_number_id: &str, token: Option<&str>) -> Result<(), MetaError> {
        let token = match token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(MetaError::new(190, "no bearer token in the Authorization header")),
        };
        match self.accounts.get(phone_number_id) {
            Some(expected) if expected != token => {
                Err(MetaError::new(190, format!("the access token is not valid for phone number id {phone_number_id}")))
            }
            _ => Ok(()),
        }
    }

    /// A body read in full, JSON and a well-formed template message that fits its template when
    /// that is registered.
    fn check_body(&self, body_read: bool, json: Option<&Value>) -> Result<Message, MetaError> {
        if !body_read {
            return Err(MetaError::invalid(format!("the body is larger than {MAX_BODY_BYTES} bytes")));
        }
        let Some(json) = json else {
            return Err(MetaError::invalid("the body is not JSON"));
        };
        let message = parse_message(json)?;
        let key = (message.name.clone(), message.language.clone());
        if let Some(code) = self.stopped_templates.get(&key) {
            return Err(MetaError::new(*code, format!("template {} ({}) was stopped by Meta", key.0, key.1)));
        }
        if let Some(template) = self.templates.get(&key) {
            check_against_template(&message, template)?;
        }
        Ok(message)
    }

    /// The first injected rule that matches the send (consumed), then its fault number: an
    /// error, a later answer, a failure reported by webhook or an ambiguous answer.
    fn apply_faults(&mut self, message: &Message, delay: &mut u64) -> Result<Passed, MetaError> {
        let passed = |failure| Passed {
            input: message.input.clone(),
            wa_id: wa_id(&message.to).to_owned(),
            failure,
            ambiguous: None,
        };

        if let Some(rule) = take_matching(&mut self.faults, &message.to) {
            *delay = delay.saturating_add(rule.delay_ms.unwrap_or(0));
            if let Some(answer) = rule.answer {
                return Ok(Passed { ambiguous: Some(answer), ..passed(None) });
            }
            if rule.code != 0 && rule.webhook {
                return Ok(passed(Some(LateFailure { code: rule.code, sent_first: false })));
            }
            if rule.code != 0 {
                return Err(MetaError::new(rule.code, format!("injected fault for {}", message.to)));
            }
        }

        match fault_number(&message.to) {
            Some(Fault::Error(code)) => Err(MetaError::new(code, format!("fault number {}", message.to))),
            Some(Fault::Timeout) => {
                *delay = delay.saturating_add(self.config.timeout_ms);
                Ok(passed(None))
            }
            Some(Fault::FailedStatus { code, sent_first }) => Ok(passed(Some(LateFailure { code, sent_first }))),
            None => Ok(passed(None)),
        }
    }

    /// The reply to a decided send. An accepted one gets a fresh wamid and its status webhooks
    /// queued, counted from its answer `delay` from now.
    fn answer(
        &mut self,
        decided: Result<Passed, MetaError>,
        phone_number_id: &str,
        json: Option<&Value>,
        delay: Duration,
    ) -> Answered {
        let passed = match decided {
            Ok(passed) => passed,
            Err(error) => {
                let reply = Reply::Json(error.status, error.envelope());
                return Answered { reply, error_code: Some(error.code), wamid: None, statuses_queued: false };
            }
        };
        if let Some(answer) = passed.ambiguous {
            let reply = passed.ambiguous_reply(answer);
            return Answered { reply, error_code: None, wamid: None, statuses_queued: false };
        }
        let wamid = format!("wamid.{}", uuid::Uuid::new_v4().simple());
        let message = SentMessage {
            wamid: &wamid,
            recipient_id: &passed.wa_id,
            phone_number_id,
            biz_opaque_callback_data: json.and_then(|v| v.get("biz_opaque_callback_data")).and_then(Value::as_str),
            failure: passed.failure,
        };
        let statuses_queued = self.queue_statuses(&message, delay);
        let reply = passed.success(json!([{"id": wamid, "message_status": "accepted"}]));
        Answered { reply, error_code: None, wamid: Some(wamid), statuses_queued }
    }
}

/// `to` as sent, a JSON number kept as its text.
fn sent_to(json: Option<&Value>) -> Option<String> {
    match json?.get("to")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `v` followed by `major.minor`, like `v21.0`.
fn valid_version(version: &str) -> bool {
    let Some((major, minor)) = version.strip_prefix('v').and_then(|v| v.split_once('.')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_look_like_v21_0() {
        assert!(valid_version("v21.0"));
        assert!(!valid_version("21.0"));
        assert!(!valid_version("v21"));
        assert!(!valid_version("v.0"));
    }
}
