//! A fake of the WhatsApp Cloud API for the local stack and the tests (never deployed).
//!
//! It answers `POST /{version}/{phone_number_id}/messages` the way Meta does for template
//! messages: it checks the bearer token and the body, answers `200` with a fresh `wamid` or
//! Meta's error envelope, and records every request. Errors can be provoked by recipient number
//! ([`FAULT_NUMBERS`]) or injected through the control API under `/_fake/` (see
//! `docs/fake-whatsapp.md`) and the matching methods of [`FakeState`]. With a `webhook_url`
//! configured ([`FakeConfig`]), accepted sends are followed by signed status webhooks (the
//! `webhooks` module).

mod webhooks;

pub use webhooks::{
    DISPLAY_PHONE_NUMBER, MAX_DELAY_MS, MAX_STATUSES_PER_POST, WABA_ID, WEBHOOK_ATTEMPTS, WebhookPost, meta_json,
};

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Largest request body read; anything longer is answered with code 100.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long the [`Fault::Timeout`] number waits by default before answering.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The app secret of the local stack when `WHATSAPP_APP_SECRET` is not set: the fake signs its
/// webhooks with it, and the service checks them with the same default.
pub const DEV_APP_SECRET: &str = "local-app-secret";

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
];

/// What a fault number provokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The error envelope with this code (status and message from [`ERROR_CODES`]).
    Error(u32),
    /// A normal `200`, but only after the configured `timeout_ms` ([`FakeConfig`]).
    Timeout,
    /// A normal `200` with a wamid, then a `failed` status webhook with this code (after a
    /// `sent` one when `sent_first`), the way Meta reports some failures.
    FailedStatus { code: u32, sent_first: bool },
}

/// Recipient numbers that always provoke a fault (fictional US 555-9xxx numbers). A `to` matches
/// after normalising it to `+` and its digits.
pub const FAULT_NUMBERS: &[(&str, Fault)] = &[
    ("+14155559001", Fault::Error(130429)),
    ("+14155559002", Fault::Error(131026)),
    ("+14155559003", Fault::Error(131056)),
    ("+14155559004", Fault::Error(132001)),
    ("+14155559005", Fault::Error(190)),
    ("+14155559006", Fault::Error(131000)),
    ("+14155559007", Fault::Timeout),
    ("+14155559008", Fault::Error(131050)),
    ("+14155559009", Fault::Error(131048)),
    ("+14155559010", Fault::Error(368)),
    ("+14155559011", Fault::FailedStatus { code: 131026, sent_first: true }),
    ("+14155559012", Fault::FailedStatus { code: 131050, sent_first: false }),
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

/// `+` and the digits of a number given as 7–15 digits after an optional `+`, else `None`.
pub fn normalize_number(number: &str) -> Option<String> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    let valid = (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| format!("+{digits}"))
}

/// An answer that leaves the sender not knowing whether the message was taken: what a flaky
/// network or a load balancer in front of the API produces. Never followed by status webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FakeAnswer {
    /// HTTP 200 with Meta's success shape but an empty `messages` array: no message id.
    NoWamid,
    /// HTTP 502 with a load balancer's HTML page ([`GATEWAY_502_BODY`]), not JSON.
    // snake_case alone would make it `gateway502`.
    #[serde(rename = "gateway_502")]
    Gateway502,
    /// HTTP 504 with a load balancer's HTML page ([`GATEWAY_504_BODY`]), not JSON.
    #[serde(rename = "gateway_504")]
    Gateway504,
    /// The request is read in full and recorded, then the connection is broken before a complete
    /// answer (recorded with status 0).
    Reset,
}

/// The body of [`FakeAnswer::Gateway502`], as an nginx-style load balancer writes it.
pub const GATEWAY_502_BODY: &str = concat!(
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n",
    "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
);

/// The body of [`FakeAnswer::Gateway504`].
pub const GATEWAY_504_BODY: &str = concat!(
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n",
    "<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n",
);

/// A rule injected through [`FakeState::inject`] or `POST /_fake/faults`: the next `count`
/// well-formed sends to `to` (any number when `None`) fail with `code` (forever when `count` is
/// `None`), answered after `delay_ms`. Code `0` only delays the answer; the send is then handled
/// as usual. With `webhook`, the send is accepted and `code` comes later as a `failed` status
/// webhook instead. With `answer`, the send gets that ambiguous answer instead (`code` and
/// `webhook` are then not used).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    #[serde(default)]
    pub to: Option<String>,
    /// Required in the JSON of `POST /_fake/faults` unless `answer` is given.
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub webhook: bool,
    #[serde(default)]
    pub answer: Option<FakeAnswer>,
}

impl Injection {
    /// Every send fails with `code`, until cleared.
    pub fn error(code: u32) -> Injection {
        Injection { to: None, code, count: None, delay_ms: None, webhook: false, answer: None }
    }

    /// Every send is answered `delay_ms` later than usual, until cleared.
    pub fn delay(delay_ms: u64) -> Injection {
        Injection { delay_ms: Some(delay_ms), ..Injection::error(0) }
    }

    /// Every send gets this ambiguous answer, until cleared.
    pub fn answer(answer: FakeAnswer) -> Injection {
        Injection { answer: Some(answer), ..Injection::error(0) }
    }

    /// Only sends to this number.
    pub fn to(mut self, number: impl Into<String>) -> Injection {
        self.to = Some(number.into());
        self
    }

    /// Only the next `count` matching sends.
    pub fn times(mut self, count: u32) -> Injection {
        self.count = Some(count);
        self
    }

    /// Answer `delay_ms` later.
    pub fn delayed(mut self, delay_ms: u64) -> Injection {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// Accept the send and report `code` as a `failed` status webhook instead.
    pub fn by_webhook(mut self) -> Injection {
        self.webhook = true;
        self
    }

    fn matches(&self, to: &str) -> bool {
        match &self.to {
            None => true,
            Some(number) => normalize_number(number).as_deref() == Some(to),
        }
    }
}

/// A template the fake knows: sends that use it (same name and language) must carry exactly
/// these many parameters per component. `buttons` are the indexes of the URL buttons that take a
/// parameter. With `named`, header and body text parameters must carry `parameter_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub header_params: usize,
    #[serde(default)]
    pub body_params: usize,
    #[serde(default)]
    pub buttons: Vec<u32>,
    #[serde(default)]
    pub named: bool,
}

impl TemplateSpec {
    /// A positional template with `body_params` body parameters and nothing else.
    pub fn new(name: impl Into<String>, language: impl Into<String>, body_params: usize) -> TemplateSpec {
        TemplateSpec {
            name: name.into(),
            language: language.into(),
            header_params: 0,
            body_params,
            buttons: Vec::new(),
            named: false,
        }
    }
}

/// A registered business phone number: sends for it must carry exactly this token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub phone_number_id: String,
    pub access_token: String,
}

/// Timing and webhooks of the fake. Fields left out of a JSON config take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FakeConfig {
    /// Added to every send's answer.
    pub latency_ms: u64,
    /// Each send's latency is drawn anew, uniformly from `latency_ms - latency_jitter_ms` (at
    /// least 0) to `latency_ms + latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// The [`Fault::Timeout`] number's wait (on top of the latency).
    pub timeout_ms: u64,
    /// Where status webhooks are posted, like `http://127.0.0.1:3000/webhooks/whatsapp`; none
    /// are posted when `None`.
    pub webhook_url: Option<String>,
    /// The key of the `X-Hub-Signature-256` HMAC; webhooks go unsigned when `None`.
    pub app_secret: Option<String>,
    /// When `sent` is posted, counted from the send's answer.
    pub sent_delay_ms: u64,
    /// When `delivered` is posted, counted from the send's answer.
    pub delivered_delay_ms: u64,
    /// When `read` is posted, counted from the send's answer; `None`: the message is never read.
    pub read_delay_ms: Option<u64>,
    /// Post every status twice (the copy one batch window later).
    pub duplicate: bool,
    /// Post the statuses of each message in an order other than sent, delivered, read.
    pub shuffle: bool,
    /// Statuses falling due within this window of the first due one share a POST.
    pub batch_window_ms: u64,
    /// The most statuses in one POST, 1 to [`MAX_STATUSES_PER_POST`]; more make several POSTs.
    /// With 1, every status is a POST of its own, as Meta mostly posts them.
    pub statuses_per_post: usize,
    /// The wait before the first retry of a failed POST; it doubles for each further one.
    pub retry_backoff_ms: u64,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            latency_ms: 0,
            latency_jitter_ms: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            webhook_url: None,
            app_secret: None,
            sent_delay_ms: 100,
            delivered_delay_ms: 300,
            read_delay_ms: Some(600),
            duplicate: false,
            shuffle: false,
            batch_window_ms: 50,
            statuses_per_post: MAX_STATUSES_PER_POST,
            retry_backoff_ms: 200,
        }
    }
}

impl FakeConfig {
    /// The defaults, changed by the environment: `FAKE_LATENCY_MS`, `FAKE_LATENCY_JITTER_MS`,
    /// `FAKE_WEBHOOK_URL`, `WHATSAPP_APP_SECRET` ([`DEV_APP_SECRET`] when unset, unsigned when
    /// empty), `FAKE_WEBHOOK_SENT_DELAY_MS`, `FAKE_WEBHOOK_DELIVERED_DELAY_MS`,
    /// `FAKE_WEBHOOK_READ_DELAY_MS` (`never` for never read), `FAKE_WEBHOOK_DUPLICATE`,
    /// `FAKE_WEBHOOK_SHUFFLE` (`true` or `false`) and `FAKE_WEBHOOK_STATUSES_PER_POST` (1 to
    /// [`MAX_STATUSES_PER_POST`]). Milliseconds are at most [`MAX_DELAY_MS`].
    pub fn from_env() -> Result<FakeConfig, String> {
        FakeConfig::from_vars(|name| std::env::var(name).ok())
    }

    /// [`FakeConfig::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<FakeConfig, String> {
        let value = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let millis = |name: &str| -> Result<Option<u64>, String> {
            let Some(v) = value(name) else { return Ok(None) };
            match v.parse::<u64>() {
                Ok(ms) if ms <= MAX_DELAY_MS => Ok(Some(ms)),
                Ok(_) => Err(format!("{name} is more than {MAX_DELAY_MS} (a day): {v:?}")),
                Err(_) => Err(format!("{name} is not a number of milliseconds: {v:?}")),
            }
        };
        let flag = |name: &str| -> Result<Option<bool>, String> {
            value(name)
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" => Ok(false),
                    _ => Err(format!("{name} is not true or false: {v:?}")),
                })
                .transpose()
        };

        let mut config = FakeConfig {
            webhook_url: value("FAKE_WEBHOOK_URL"),
            app_secret: match var("WHATSAPP_APP_SECRET") {
                None => Some(DEV_APP_SECRET.to_owned()),
                Some(secret) => Some(secret).filter(|s| !s.is_empty()),
            },
            ..FakeConfig::default()
        };
        config.latency_ms = millis("FAKE_LATENCY_MS")?.unwrap_or(config.latency_ms);
        config.latency_jitter_ms = millis("FAKE_LATENCY_JITTER_MS")?.unwrap_or(config.latency_jitter_ms);
        config.sent_delay_ms = millis("FAKE_WEBHOOK_SENT_DELAY_MS")?.unwrap_or(config.sent_delay_ms);
        config.delivered_delay_ms = millis("FAKE_WEBHOOK_DELIVERED_DELAY_MS")?.unwrap_or(config.delivered_delay_ms);
        config.read_delay_ms = match value("FAKE_WEBHOOK_READ_DELAY_MS") {
            Some(never) if never.eq_ignore_ascii_case("never") => None,
            _ => millis("FAKE_WEBHOOK_READ_DELAY_MS")?.or(config.read_delay_ms),
        };
        config.duplicate = flag("FAKE_WEBHOOK_DUPLICATE")?.unwrap_or(config.duplicate);
        config.shuffle = flag("FAKE_WEBHOOK_SHUFFLE")?.unwrap_or(config.shuffle);
        if let Some(v) = value("FAKE_WEBHOOK_STATUSES_PER_POST") {
            config.statuses_per_post =
                v.parse().ok().filter(|n| (1..=MAX_STATUSES_PER_POST).contains(n)).ok_or_else(|| {
                    format!("FAKE_WEBHOOK_STATUSES_PER_POST is not 1 to {MAX_STATUSES_PER_POST}: {v:?}")
                })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether the webhook URL, when given, is an `http` or `https` URL, the latency, its
    /// jitter, the webhook delays, window and back-off are at most [`MAX_DELAY_MS`], and
    /// `statuses_per_post` is 1 to [`MAX_STATUSES_PER_POST`].
    pub fn validate(&self) -> Result<(), String> {
        let delays = [
            ("latency_ms", Some(self.latency_ms)),
            ("latency_jitter_ms", Some(self.latency_jitter_ms)),
            ("sent_delay_ms", Some(self.sent_delay_ms)),
            ("delivered_delay_ms", Some(self.delivered_delay_ms)),
            ("read_delay_ms", self.read_delay_ms),
            ("batch_window_ms", Some(self.batch_window_ms)),
            ("retry_backoff_ms", Some(self.retry_backoff_ms)),
        ];
        if let Some((name, _)) = delays.iter().find(|(_, ms)| ms.is_some_and(|ms| ms > MAX_DELAY_MS)) {
            return Err(format!("{name} is more than {MAX_DELAY_MS} (a day)"));
        }
        if !(1..=MAX_STATUSES_PER_POST).contains(&self.statuses_per_post) {
            return Err(format!(
                "statuses_per_post must be 1 to {MAX_STATUSES_PER_POST}, not {}",
                self.statuses_per_post
            ));
        }
        let Some(url) = &self.webhook_url else { return Ok(()) };
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
            _ => Err(format!("webhook_url {url:?} is not an http(s) URL")),
        }
    }

    /// One send's latency: uniform from `latency_ms - latency_jitter_ms` (at least 0) to
    /// `latency_ms + latency_jitter_ms`, both capped at [`MAX_DELAY_MS`] so the sum cannot
    /// overflow whatever [`FakeState::set_config`] was given.
    fn draw_latency_ms(&self) -> u64 {
        let latency = self.latency_ms.min(MAX_DELAY_MS);
        let jitter = self.latency_jitter_ms.min(MAX_DELAY_MS);
        let low = latency.saturating_sub(jitter);
        let high = latency + jitter;
        low + random_below(high - low + 1)
    }

    /// This configuration with the fields of a JSON object replaced (`null` clears an optional
    /// field); unknown fields and wrong types are refused.
    fn patched(&self, patch: Value) -> Result<FakeConfig, String> {
        let Value::Object(patch) = patch else { return Err("the config must be a JSON object".into()) };
        let mut merged = match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        merged.extend(patch);
        let config: FakeConfig = serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }
}

/// One request to the send endpoint, accepted or not, as it arrived and as it was answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recorded {
    /// Position in arrival order, from 1 (keeps counting across [`FakeState::clear`]).
    pub seq: u64,
    /// Arrival time in unix milliseconds, never smaller than the previous request's.
    pub at_ms: u64,
    pub version: String,
    pub phone_number_id: String,
    /// `to` as sent (a JSON number is kept as its text); `None` when absent.
    pub to: Option<String>,
    /// The bearer token of the `Authorization` header.
    pub token: Option<String>,
    /// The parsed body, `null` when it was not JSON.
    pub body: Value,
    /// The HTTP status answered (or to be answered, for a delayed answer); 0 when the
    /// connection is broken instead ([`FakeAnswer::Reset`]).
    pub status: u16,
    /// `error.code` of the answer, when it was an error.
    pub error_code: Option<u32>,
    /// The message id, when accepted.
    pub wamid: Option<String>,
}

impl Recorded {
    /// Whether the send was answered with a message id (never for a [`FakeAnswer`]).
    pub fn accepted(&self) -> bool {
        self.wamid.is_some()
    }
}

#[derive(Default)]
struct Data {
    accounts: HashMap<String, String>,
    templates: HashMap<(String, String), TemplateSpec>,
    faults: Vec<Injection>,
    config: FakeConfig,
    requests: Vec<Recorded>,
    seq: u64,
    last_at_ms: u64,
    webhooks: webhooks::Queue,
}

/// The fake's state: accounts, templates, faults, timing, recorded requests and webhooks.
/// Clones share it.
#[derive(Clone, Default)]
pub struct FakeState {
    data: Arc<Mutex<Data>>,
    worker: Arc<webhooks::Worker>,
}

impl FakeState {
    pub fn new() -> FakeState {
        FakeState::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every recorded send request, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The `to` of every accepted send, as `+` and digits, in arrival order.
    pub fn accepted_to(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.accepted())
            .filter_map(|r| r.to.as_deref().and_then(normalize_number))
            .collect()
    }

    /// Forgets the recorded requests and webhook POSTs; returns how many requests there were.
    pub fn clear(&self) -> usize {
        let mut data = self.lock();
        data.webhooks.clear_posts();
        std::mem::take(&mut data.requests).len()
    }

    /// Adds a fault rule; rules are tried in the order they were added, before [`FAULT_NUMBERS`].
    pub fn inject(&self, fault: Injection) {
        self.lock().faults.push(fault);
    }

    /// The fault rules still active (with their remaining `count`).
    pub fn faults(&self) -> Vec<Injection> {
        self.lock().faults.clone()
    }

    /// Removes every injected fault rule; returns how many there were.
    pub fn clear_faults(&self) -> usize {
        std::mem::take(&mut self.lock().faults).len()
    }

    /// Registers (or replaces) the access token of a phone number id.
    pub fn register_account(&self, phone_number_id: impl Into<String>, access_token: impl Into<String>) {
        self.lock().accounts.insert(phone_number_id.into(), access_token.into());
    }

    /// Registers (or replaces) a template, keyed by name and language.
    pub fn register_template(&self, template: TemplateSpec) {
        self.lock().templates.insert((template.name.clone(), template.language.clone()), template);
    }

    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    pub fn set_config(&self, config: FakeConfig) {
        self.lock().config = config;
    }

    /// Back to a fresh fake: no requests, faults, accounts or templates, default config, no
    /// webhooks recorded or waiting (POSTs under way are neither recorded nor retried).
    pub fn reset(&self) {
        let mut data = self.lock();
        let seq = data.seq;
        let last_at_ms = data.last_at_ms;
        let mut webhooks = std::mem::take(&mut data.webhooks);
        webhooks.reset();
        *data = Data { seq, last_at_ms, webhooks, ..Data::default() };
    }

    /// Decides the answer to a send, consumes the matching fault rule and records the request,
    /// all under one lock so concurrent sends see a consistent state.
    fn handle_send(
        &self,
        version: String,
        phone_number_id: String,
        headers: &HeaderMap,
        body: Result<Bytes, ()>,
    ) -> Outcome {
        let token = bearer_token(headers);
        let json: Option<Value> = body.as_ref().ok().and_then(|bytes| serde_json::from_slice(bytes).ok());
        let to = json.as_ref().and_then(|v| v.get("to")).and_then(|to| match to {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });

        let mut data = self.lock();
        let mut delay = data.config.draw_latency_ms();
        let result = data.decide(&version, &phone_number_id, token.as_deref(), body.is_ok(), json.as_ref(), &mut delay);

        let mut statuses_queued = false;
        let (error_code, wamid, reply) = match result {
            Ok(Passed { ambiguous: Some(answer), input, wa_id, .. }) => {
                let reply = match answer {
                    FakeAnswer::NoWamid => Reply::Json(
                        StatusCode::OK,
                        json!({
                            "messaging_product": "whatsapp",
                            "contacts": [{"input": input, "wa_id": wa_id}],
                            "messages": [],
                        }),
                    ),
                    FakeAnswer::Gateway502 => Reply::Html(StatusCode::BAD_GATEWAY, GATEWAY_502_BODY),
                    FakeAnswer::Gateway504 => Reply::Html(StatusCode::GATEWAY_TIMEOUT, GATEWAY_504_BODY),
                    FakeAnswer::Reset => Reply::Reset,
                };
                (None, None, reply)
            }
            Ok(accepted) => {
                let wamid = format!("wamid.{}", uuid::Uuid::new_v4().simple());
                let answer = json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": accepted.input, "wa_id": accepted.wa_id}],
                    "messages": [{"id": wamid, "message_status": "accepted"}],
                });
                let message = webhooks::SentMessage {
                    wamid: &wamid,
                    recipient_id: &accepted.wa_id,
                    phone_number_id: &phone_number_id,
                    biz_opaque_callback_data: json
                        .as_ref()
                        .and_then(|v| v.get("biz_opaque_callback_data"))
                        .and_then(Value::as_str),
                    failure: accepted.failure,
                };
                statuses_queued = data.queue_statuses(&message, Duration::from_millis(delay));
                (None, Some(wamid), Reply::Json(StatusCode::OK, answer))
            }
            Err(error) => (Some(error.code), None, Reply::Json(error.status, error.envelope())),
        };

        data.seq += 1;
        let at_ms = now_ms().max(data.last_at_ms);
        data.last_at_ms = at_ms;
        let recorded = Recorded {
            seq: data.seq,
            at_ms,
            version,
            phone_number_id,
            to,
            token,
            body: json.unwrap_or(Value::Null),
            status: reply.recorded_status(),
            error_code,
            wamid,
        };
        tracing::info!(
            phone_number_id = %recorded.phone_number_id,
            to = %recorded.to.as_deref().unwrap_or("-"),
            status = recorded.status,
            code = recorded.error_code,
            "fake WhatsApp send"
        );
        data.requests.push(recorded);
        drop(data);
        if statuses_queued {
            self.wake_webhook_worker();
        }
        Outcome { delay: Duration::from_millis(delay), reply }
    }
}

/// What a send is answered with, after `delay`.
struct Outcome {
    delay: Duration,
    reply: Reply,
}

enum Reply {
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

    fn into_response(self) -> Response {
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
    failure: Option<webhooks::LateFailure>,
    ambiguous: Option<FakeAnswer>,
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
            return Err(MetaError::new(100, format!("unknown Graph API version {version:?} (expected like v21.0)")));
        }
        let token = match token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(MetaError::new(190, "no bearer token in the Authorization header")),
        };
        if let Some(expected) = self.accounts.get(phone_number_id)
            && expected != token
        {
            return Err(MetaError::new(
                190,
                format!("the access token is not valid for phone number id {phone_number_id}"),
            ));
        }
        if !body_read {
            return Err(MetaError::new(100, format!("the body is larger than {MAX_BODY_BYTES} bytes")));
        }
        let Some(json) = json else {
            return Err(MetaError::new(100, "the body is not JSON"));
        };
        let message = parse_message(json)?;
        if let Some(template) = self.templates.get(&(message.name.clone(), message.language.clone())) {
            check_against_template(&message, template)?;
        }

        let wa_id = message.to.trim_start_matches('+').to_owned();
        let passed = |failure| Passed { input: message.input.clone(), wa_id: wa_id.clone(), failure, ambiguous: None };
        let accepted = |failure| Ok(passed(failure));

        if let Some(i) = self.faults.iter().position(|f| f.matches(&message.to)) {
            let fault = self.faults[i].clone();
            match self.faults[i].count.as_mut() {
                Some(count) if *count <= 1 => {
                    self.faults.remove(i);
                }
                Some(count) => *count -= 1,
                None => {}
            }
            *delay = delay.saturating_add(fault.delay_ms.unwrap_or(0));
            if let Some(answer) = fault.answer {
                return Ok(Passed { ambiguous: Some(answer), ..passed(None) });
            }
            if fault.code != 0 && fault.webhook {
                return accepted(Some(webhooks::LateFailure { code: fault.code, sent_first: false }));
            }
            if fault.code != 0 {
                return Err(MetaError::new(fault.code, format!("injected fault for {}", message.to)));
            }
        }

        match FAULT_NUMBERS.iter().find(|(number, _)| *number == message.to) {
            Some((_, Fault::Error(code))) => Err(MetaError::new(*code, format!("fault number {}", message.to))),
            Some((_, Fault::Timeout)) => {
                *delay = delay.saturating_add(self.config.timeout_ms);
                accepted(None)
            }
            Some((_, Fault::FailedStatus { code, sent_first })) => {
                accepted(Some(webhooks::LateFailure { code: *code, sent_first: *sent_first }))
            }
            None => accepted(None),
        }
    }
}

/// An answer in Meta's error envelope.
#[derive(Debug)]
struct MetaError {
    status: StatusCode,
    code: u32,
    message: Cow<'static, str>,
    details: String,
}

impl MetaError {
    fn new(code: u32, details: impl Into<String>) -> MetaError {
        let (status, message) = error_for(code);
        MetaError { status, code, message, details: details.into() }
    }

    fn envelope(&self) -> Value {
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

    fn into_response(self) -> Response {
        json_response(self.status, &self.envelope())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn fbtrace_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("A{}", &hex[..22])
}

/// A random number below `n` (0 when `n` is 0), from the random bits of a v4 UUID; the modulo
/// bias is negligible for the small ranges the fake draws from.
fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
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

// ---- the message body ----

/// A well-formed template send, reduced to what the template checks need.
struct Message {
    /// `to` as sent.
    input: String,
    /// `to` as `+` and digits.
    to: String,
    name: String,
    language: String,
    components: Vec<Component>,
}

struct Component {
    path: String,
    kind: Kind,
    params: usize,
    /// The first text parameter without `parameter_name`, by its path.
    unnamed_text: Option<String>,
}

#[derive(PartialEq)]
enum Kind {
    Header,
    Body,
    Button { sub_type: String, index: u32 },
}

impl Kind {
    /// Whether two components fill the same place of a template (a button by its index).
    fn same_slot(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::Button { index: a, .. }, Kind::Button { index: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

fn invalid(details: impl Into<String>) -> MetaError {
    MetaError::new(100, details)
}

fn missing(details: impl Into<String>) -> MetaError {
    MetaError::new(131008, details)
}

/// A required string field: absent → 131008, not a non-empty string → 100.
fn required_str<'a>(object: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a str, MetaError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(missing(format!("{path}{field} is required"))),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(missing(format!("{path}{field} is empty"))),
        Some(_) => Err(invalid(format!("{path}{field} must be a string"))),
    }
}

fn parse_message(json: &Value) -> Result<Message, MetaError> {
    let Some(body) = json.as_object() else {
        return Err(invalid("the body must be a JSON object"));
    };
    if required_str(body, "messaging_product", "")? != "whatsapp" {
        return Err(invalid("messaging_product must be \"whatsapp\""));
    }
    match body.get("recipient_type") {
        None => {}
        Some(Value::String(s)) if s == "individual" => {}
        Some(_) => return Err(invalid("recipient_type must be \"individual\"")),
    }
    let input = match body.get("to") {
        None | Some(Value::Null) => return Err(missing("to is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("to must be a string")),
    };
    let Some(to) = normalize_number(&input) else {
        return Err(invalid(format!("to {input:?} is not a phone number: expected 7-15 digits after an optional +")));
    };
    let kind = required_str(body, "type", "")?;
    if kind != "template" {
        return Err(invalid(format!("type {kind:?} is not supported: this fake only sends \"template\" messages")));
    }
    match body.get("biz_opaque_callback_data") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.chars().count() <= 512 => {}
        Some(Value::String(_)) => return Err(invalid("biz_opaque_callback_data is longer than 512 characters")),
        Some(_) => return Err(invalid("biz_opaque_callback_data must be a string")),
    }
    let template = match body.get("template") {
        None | Some(Value::Null) => return Err(missing("template is required")),
        Some(Value::Object(t)) => t,
        Some(_) => return Err(invalid("template must be an object")),
    };
    let name = required_str(template, "name", "template.")?.to_owned();
    let language = match template.get("language") {
        None | Some(Value::Null) => return Err(missing("template.language is required")),
        Some(Value::Object(l)) => required_str(l, "code", "template.language.")?.to_owned(),
        Some(_) => return Err(invalid("template.language must be an object with a code")),
    };
    let components = match template.get("components") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            list.iter().enumerate().map(|(i, c)| parse_component(c, i)).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(invalid("template.components must be an array")),
    };
    for (i, c) in components.iter().enumerate() {
        if components[..i].iter().any(|earlier| earlier.kind.same_slot(&c.kind)) {
            return Err(invalid(format!("{} repeats an earlier component", c.path)));
        }
    }
    Ok(Message { input, to, name, language, components })
}

fn parse_component(value: &Value, i: usize) -> Result<Component, MetaError> {
    let path = format!("template.components[{i}]");
    let Some(component) = value.as_object() else {
        return Err(invalid(format!("{path} must be an object")));
    };
    let prefix = format!("{path}.");
    let kind = match required_str(component, "type", &prefix)? {
        "header" => Kind::Header,
        "body" => Kind::Body,
        "button" => {
            let sub_type = required_str(component, "sub_type", &prefix)?;
            if !matches!(sub_type, "url" | "quick_reply" | "copy_code" | "flow") {
                return Err(invalid(format!(
                    "{path}.sub_type {sub_type:?} is not one of url, quick_reply, copy_code, flow"
                )));
            }
            let index = match component.get("index") {
                None | Some(Value::Null) => return Err(missing(format!("{path}.index is required"))),
                Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
                Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                Some(_) => None,
            };
            let Some(index) = index else {
                return Err(invalid(format!("{path}.index must be a button position like \"0\"")));
            };
            Kind::Button { sub_type: sub_type.to_owned(), index }
        }
        other => {
            return Err(invalid(format!("{path}.type {other:?} is not one of header, body, button")));
        }
    };
    let params = match component.get("parameters") {
        None | Some(Value::Null) => return Err(missing(format!("{path}.parameters is required"))),
        Some(Value::Array(params)) => params,
        Some(_) => return Err(invalid(format!("{path}.parameters must be an array"))),
    };
    let allowed: &[&str] = match kind {
        Kind::Header => &["text", "image", "document", "video", "location"],
        Kind::Body => &["text", "currency", "date_time"],
        Kind::Button { .. } => &["text", "payload", "coupon_code", "action"],
    };
    let mut unnamed_text = None;
    for (j, param) in params.iter().enumerate() {
        let param_path = format!("{path}.parameters[{j}]");
        let named = parse_parameter(param, &param_path, allowed)?;
        if named == Some(false) && unnamed_text.is_none() {
            unnamed_text = Some(param_path);
        }
    }
    Ok(Component { path, kind, params: params.len(), unnamed_text })
}

/// Checks one parameter; for a text parameter, returns whether it carries `parameter_name`.
fn parse_parameter(value: &Value, path: &str, allowed: &[&str]) -> Result<Option<bool>, MetaError> {
    let Some(param) = value.as_object() else {
        return Err(invalid(format!("{path} must be an object")));
    };
    let prefix = format!("{path}.");
    let kind = required_str(param, "type", &prefix)?;
    if !allowed.contains(&kind) {
        return Err(invalid(format!("{path}.type {kind:?} is not allowed here (one of {})", allowed.join(", "))));
    }
    match kind {
        "text" => {
            required_str(param, "text", &prefix)?;
            return match param.get("parameter_name") {
                None | Some(Value::Null) => Ok(Some(false)),
                Some(_) => required_str(param, "parameter_name", &prefix).map(|_| Some(true)),
            };
        }
        "payload" | "coupon_code" => {
            required_str(param, kind, &prefix)?;
        }
        "currency" => {
            let currency = required_object(param, kind, &prefix)?;
            let inner = format!("{prefix}currency.");
            required_str(currency, "fallback_value", &inner)?;
            required_str(currency, "code", &inner)?;
            if !currency.get("amount_1000").is_some_and(Value::is_i64) {
                return Err(missing(format!("{inner}amount_1000 is required (an integer)")));
            }
        }
        "date_time" => {
            let date_time = required_object(param, kind, &prefix)?;
            required_str(date_time, "fallback_value", &format!("{prefix}date_time."))?;
        }
        "image" | "document" | "video" => {
            let media = required_object(param, kind, &prefix)?;
            let has = |field: &str| media.get(field).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if !has("link") && !has("id") {
                return Err(missing(format!("{prefix}{kind} needs a link or an id")));
            }
        }
        _ => {
            required_object(param, kind, &prefix)?;
        }
    }
    Ok(None)
}

fn required_object<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, MetaError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(missing(format!("{path}{field} is required"))),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(invalid(format!("{path}{field} must be an object"))),
    }
}

/// The parameter counts of a send against its registered template (132000), and
/// `parameter_name` on text parameters of a named template (131008).
fn check_against_template(message: &Message, template: &TemplateSpec) -> Result<(), MetaError> {
    let mismatch = |details: String| MetaError::new(132000, format!("template {}: {details}", template.name));
    let count = |kind: Kind| message.components.iter().find(|c| c.kind == kind).map_or(0, |c| c.params);
    let header = count(Kind::Header);
    if header != template.header_params {
        return Err(mismatch(format!("header expects {} parameters, got {header}", template.header_params)));
    }
    let body = count(Kind::Body);
    if body != template.body_params {
        return Err(mismatch(format!("body expects {} parameters, got {body}", template.body_params)));
    }
    for component in &message.components {
        if let Kind::Button { sub_type, index } = &component.kind
            && sub_type == "url"
        {
            if !template.buttons.contains(index) {
                return Err(mismatch(format!("url button {index} takes no parameter")));
            }
            if component.params != 1 {
                return Err(mismatch(format!("url button {index} expects 1 parameter, got {}", component.params)));
            }
        }
    }
    for index in &template.buttons {
        let sent = message
            .components
            .iter()
            .any(|c| matches!(&c.kind, Kind::Button { sub_type, index: i } if sub_type == "url" && i == index));
        if !sent {
            return Err(mismatch(format!("url button {index} expects 1 parameter, got none")));
        }
    }
    if template.named {
        let unnamed = message.components.iter().filter(|c| c.kind == Kind::Header || c.kind == Kind::Body);
        if let Some(path) = unnamed.filter_map(|c| c.unnamed_text.as_deref()).next() {
            return Err(missing(format!(
                "{path}.parameter_name is required: template {} uses named parameters",
                template.name
            )));
        }
    }
    Ok(())
}

// ---- HTTP ----

/// The fake's routes: the send endpoint and the control API under `/_fake/`.
pub fn router(state: FakeState) -> axum::Router {
    axum::Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/_fake/requests", get(list_requests).delete(clear_requests))
        .route("/_fake/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_fake/accounts", post(add_account))
        .route("/_fake/templates", post(add_template))
        .route("/_fake/config", get(get_config).post(set_config))
        .route("/_fake/webhooks", get(webhooks::list).post(webhooks::post_payload).delete(webhooks::clear))
        .route("/_fake/opt-out", post(webhooks::opt_out))
        .route("/_fake/reset", post(reset))
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

/// Listens on `addr` and serves until the process ends.
pub async fn serve(state: FakeState, addr: SocketAddr) -> Result<(), crate::BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!("fake WhatsApp Cloud API listening on http://{local}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}

/// Serves on an ephemeral port of 127.0.0.1 in a background task; returns the address.
pub async fn spawn(state: FakeState) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!("fake WhatsApp Cloud API stopped: {e}");
        }
    });
    Ok(addr)
}

async fn send(
    State(state): State<FakeState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let Ok(Path((version, phone_number_id))) = path else {
        return unknown_path(request).await;
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ());
    let outcome = state.handle_send(version, phone_number_id, &parts.headers, body);
    // Outside the lock, so each request waits on its own and concurrent sends are answered
    // concurrently.
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    outcome.reply.into_response()
}

async fn unknown_path(request: Request) -> Response {
    let mut error = MetaError::new(100, format!("unknown path {}", request.uri().path()));
    error.status = StatusCode::NOT_FOUND;
    error.code = 2500;
    error.message = Cow::Borrowed("Unknown path components");
    error.into_response()
}

async fn wrong_method(request: Request) -> Response {
    let mut error = MetaError::new(100, format!("{} is not supported on {}", request.method(), request.uri().path()));
    error.status = StatusCode::METHOD_NOT_ALLOWED;
    error.message = Cow::Owned(format!("Unsupported {} request.", request.method().as_str().to_lowercase()));
    error.into_response()
}

/// Parses a control body, answering code 100 with the reason when it does not fit.
async fn control_body<T: DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| MetaError::new(100, "the body is too large").into_response())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| MetaError::new(100, format!("invalid control body: {e}")).into_response())
}

async fn list_requests(State(state): State<FakeState>) -> Response {
    json_response(StatusCode::OK, &json!({ "requests": state.requests() }))
}

async fn clear_requests(State(state): State<FakeState>) -> Response {
    json_response(StatusCode::OK, &json!({ "cleared": state.clear() }))
}

async fn list_faults(State(state): State<FakeState>) -> Response {
    json_response(StatusCode::OK, &json!({ "faults": state.faults() }))
}

async fn add_fault(State(state): State<FakeState>, body: Body) -> Response {
    let body: Value = match control_body(body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    // `code` defaults to 0 only for an answer: an error rule that forgot it is refused.
    let has_code = body.get("code").is_some();
    let fault: Injection = match serde_json::from_value(body) {
        Ok(f) => f,
        Err(e) => return MetaError::new(100, format!("invalid control body: {e}")).into_response(),
    };
    if let Some(to) = &fault.to
        && normalize_number(to).is_none()
    {
        return MetaError::new(100, format!("to {to:?} is not a phone number")).into_response();
    }
    if fault.count == Some(0) {
        return MetaError::new(100, "count must be at least 1 (leave it out for forever)").into_response();
    }
    if fault.answer.is_some() {
        if fault.code != 0 {
            return MetaError::new(100, "an answer is not an error code: give answer or code, not both")
                .into_response();
        }
        if fault.webhook {
            return MetaError::new(100, "an answer is never followed by webhooks: leave webhook out").into_response();
        }
    } else {
        if !has_code {
            return MetaError::new(100, "code is required (or an answer)").into_response();
        }
        if fault.code == 0 && fault.delay_ms.is_none() {
            return MetaError::new(100, "code 0 only delays: give delay_ms").into_response();
        }
        if fault.code == 0 && fault.webhook {
            return MetaError::new(100, "webhook reports an error code: give a code other than 0").into_response();
        }
    }
    state.inject(fault.clone());
    json_response(StatusCode::OK, &json!({ "fault": fault }))
}

async fn clear_faults(State(state): State<FakeState>) -> Response {
    json_response(StatusCode::OK, &json!({ "cleared": state.clear_faults() }))
}

async fn add_account(State(state): State<FakeState>, body: Body) -> Response {
    let account: Account = match control_body(body).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    if account.phone_number_id.is_empty() || account.access_token.is_empty() {
        return MetaError::new(100, "phone_number_id and access_token must not be empty").into_response();
    }
    state.register_account(account.phone_number_id.clone(), account.access_token.clone());
    json_response(StatusCode::OK, &json!({ "account": account }))
}

async fn add_template(State(state): State<FakeState>, body: Body) -> Response {
    let template: TemplateSpec = match control_body(body).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    if template.name.is_empty() || template.language.is_empty() {
        return MetaError::new(100, "name and language must not be empty").into_response();
    }
    state.register_template(template.clone());
    json_response(StatusCode::OK, &json!({ "template": template }))
}

async fn get_config(State(state): State<FakeState>) -> Response {
    json_response(StatusCode::OK, &json!({ "config": state.config() }))
}

/// Only the fields given change.
async fn set_config(State(state): State<FakeState>, body: Body) -> Response {
    let patch: Value = match control_body(body).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let config = match state.config().patched(patch) {
        Ok(config) => config,
        Err(e) => return MetaError::new(100, format!("invalid config: {e}")).into_response(),
    };
    state.set_config(config.clone());
    json_response(StatusCode::OK, &json!({ "config": config }))
}

async fn reset(State(state): State<FakeState>) -> Response {
    state.reset();
    json_response(StatusCode::OK, &json!({ "reset": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise_to_plus_and_digits() {
        assert_eq!(normalize_number("14155559001").as_deref(), Some("+14155559001"));
        assert_eq!(normalize_number("+14155559001").as_deref(), Some("+14155559001"));
        assert_eq!(normalize_number("+1 415 555 9001"), None);
        assert_eq!(normalize_number("123456"), None);
        assert_eq!(normalize_number("1234567890123456"), None);
        assert!(FAULT_NUMBERS.iter().all(|(n, _)| normalize_number(n).as_deref() == Some(*n)));
    }

    #[test]
    fn versions_look_like_v21_0() {
        assert!(valid_version("v21.0"));
        assert!(!valid_version("21.0"));
        assert!(!valid_version("v21"));
        assert!(!valid_version("v.0"));
    }

    #[test]
    fn every_fault_number_code_has_its_own_status() {
        for (_, fault) in FAULT_NUMBERS {
            if let Fault::Error(code) | Fault::FailedStatus { code, .. } = fault {
                assert!(ERROR_CODES.iter().any(|(c, _, _)| c == code), "{code} missing from ERROR_CODES");
            }
        }
        assert_eq!(error_for(131000).0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_for(424242), (StatusCode::BAD_REQUEST, Cow::Owned("(#424242) An error occurred".into())));
    }

    #[test]
    fn config_comes_from_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let config = FakeConfig::from_vars(vars(&[])).unwrap_or_default();
        assert_eq!(config, FakeConfig { app_secret: Some(DEV_APP_SECRET.into()), ..FakeConfig::default() });

        let config = FakeConfig::from_vars(vars(&[
            ("FAKE_WEBHOOK_URL", "http://127.0.0.1:3000/webhooks/whatsapp"),
            ("WHATSAPP_APP_SECRET", "s3cret"),
            ("FAKE_WEBHOOK_SENT_DELAY_MS", "5"),
            ("FAKE_WEBHOOK_DELIVERED_DELAY_MS", " 10 "),
            ("FAKE_WEBHOOK_READ_DELAY_MS", "never"),
            ("FAKE_WEBHOOK_DUPLICATE", "true"),
            ("FAKE_WEBHOOK_SHUFFLE", "1"),
        ]));
        let expected = FakeConfig {
            webhook_url: Some("http://127.0.0.1:3000/webhooks/whatsapp".into()),
            app_secret: Some("s3cret".into()),
            sent_delay_ms: 5,
            delivered_delay_ms: 10,
            read_delay_ms: None,
            duplicate: true,
            shuffle: true,
            ..FakeConfig::default()
        };
        assert_eq!(config, Ok(expected));

        // An empty secret means unsigned webhooks.
        let config = FakeConfig::from_vars(vars(&[("WHATSAPP_APP_SECRET", "")]));
        assert_eq!(config.map(|c| c.app_secret), Ok(None));
        for bad in [
            &[("FAKE_WEBHOOK_READ_DELAY_MS", "soon")][..],
            &[("FAKE_WEBHOOK_SHUFFLE", "maybe")],
            &[("FAKE_WEBHOOK_URL", "localhost:3000")],
        ] {
            let error = FakeConfig::from_vars(vars(bad)).err().unwrap_or_default();
            assert!(error.contains(bad[0].0) || error.contains("webhook_url"), "{error}");
        }
    }

    #[test]
    fn a_config_patch_changes_only_the_fields_given() {
        let config = FakeConfig::default();
        let patched = config.patched(json!({"latency_ms": 5, "webhook_url": "http://127.0.0.1:1/hook"}));
        let expected =
            FakeConfig { latency_ms: 5, webhook_url: Some("http://127.0.0.1:1/hook".into()), ..FakeConfig::default() };
        assert_eq!(patched, Ok(expected.clone()));
        let cleared = expected.patched(json!({"webhook_url": null, "read_delay_ms": null}));
        assert_eq!(cleared, Ok(FakeConfig { latency_ms: 5, read_delay_ms: None, ..FakeConfig::default() }));
        assert!(config.patched(json!({"latency": 5})).is_err());
        assert!(config.patched(json!({"latency_ms": "5"})).is_err());
        assert!(config.patched(json!({"webhook_url": "ftp://host/x"})).is_err());
        assert!(config.patched(json!([1])).is_err());
        assert!(config.patched(json!({"read_delay_ms": MAX_DELAY_MS + 1})).is_err());
        assert!(config.patched(json!({"latency_jitter_ms": MAX_DELAY_MS + 1})).is_err());
        assert!(config.patched(json!({"statuses_per_post": 0})).is_err());
        assert!(config.patched(json!({"timeout_ms": u64::MAX})).is_ok(), "the timeout number's wait is not bounded");
    }

    #[test]
    fn latency_is_drawn_within_the_jitter_and_never_below_zero() {
        let draws = |latency_ms, latency_jitter_ms| {
            let config = FakeConfig { latency_ms, latency_jitter_ms, ..FakeConfig::default() };
            (0..2000).map(|_| config.draw_latency_ms()).collect::<Vec<_>>()
        };
        assert!(draws(70, 0).iter().all(|&ms| ms == 70));
        let spread = draws(100, 10);
        assert!(spread.iter().all(|ms| (90..=110).contains(ms)), "{spread:?}");
        // 21 values drawn 2000 times: every one comes up, the ends included.
        for ms in 90..=110 {
            assert!(spread.contains(&ms), "{ms} never drawn");
        }
        let clamped = draws(5, 20);
        assert!(clamped.iter().all(|ms| (0..=25).contains(ms)));
        assert!(clamped.contains(&0) && clamped.contains(&25));
        let huge = FakeConfig { latency_ms: u64::MAX, latency_jitter_ms: u64::MAX, ..FakeConfig::default() };
        assert!(huge.draw_latency_ms() <= 2 * MAX_DELAY_MS, "capped rather than overflowing");
    }
}
