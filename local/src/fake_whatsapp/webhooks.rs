//! Status webhooks: after an accepted send the fake posts `sent`, `delivered` and `read` (or
//! `failed`) for the wamid to the configured URL, batched, signed and retried the way Meta does;
//! on demand it posts an opt-out or any payload (`POST /_fake/opt-out`, `POST /_fake/webhooks`),
//! and it records every attempt ([`WebhookPost`]). Accepted sends queue their statuses by due
//! time in [`Queue`]. One worker task per [`FakeState`] sleeps until the earliest is due, takes
//! everything due within the batch window and hands each POST (at most `statuses_per_post`
//! statuses, [`MAX_STATUSES_PER_POST`] by default) to a task of its own, so a slow or failing
//! receiver holds up nothing else and POSTs of one status each go out side by side however many
//! there are.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::config::FakeConfig;
use super::errors::{MetaError, error_for};
use super::message::{normalize_number, wa_id};
use super::routes::{answer, control_body};
use super::state::{Data, FakeState};
use super::{now_ms, random_below};

/// The WhatsApp Business Account id in `entry[].id`.
pub const WABA_ID: &str = "102290129340398";

/// `metadata.display_phone_number` of every webhook (the fake does not know the real one).
pub const DISPLAY_PHONE_NUMBER: &str = "15550783881";

/// Meta's most statuses in one POST.
pub const MAX_STATUSES_PER_POST: usize = 1000;

/// Tries of a status POST before it is given up (the first one included).
pub const WEBHOOK_ATTEMPTS: u32 = 5;

/// The longest delay, batch window or back-off the fake accepts: a day.
pub const MAX_DELAY_MS: u64 = 24 * 3600 * 1000;

/// The whole POST, connection included, must end within this time.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The profile name of an opt-out when none is given: not ASCII, so receivers meet Meta's
/// `\u00eb` escaping in the ordinary case.
const DEFAULT_PROFILE_NAME: &str = "Zoë";

/// One attempt to POST a webhook, as posted and as answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookPost {
    /// Position in recording order, from 1 (keeps counting across clears and resets).
    pub seq: u64,
    /// When the attempt started, in unix milliseconds.
    pub at_ms: u64,
    /// 1 for the first try, 2 for the first retry…
    pub attempt: u32,
    pub url: String,
    pub payload: Value,
    /// `(wamid, status)` of every status in the payload, in payload order.
    pub statuses: Vec<(String, String)>,
    /// The HTTP status the receiver answered; `None` when no answer came.
    pub status: Option<u16>,
    /// Why no answer came (connection refused, timeout…).
    pub error: Option<String>,
}

impl WebhookPost {
    /// Whether the receiver took it: Meta counts any answer but 200 as a failure.
    pub fn succeeded(&self) -> bool {
        self.status == Some(200)
    }
}

/// JSON serialised the way Meta signs it: every character beyond ASCII escaped as `\uXXXX`
/// (lowercase hex, a UTF-16 surrogate pair beyond the BMP). Receivers must check the signature
/// over these exact bytes, not over a re-serialisation.
pub fn meta_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len());
    // serde_json writes non-ASCII characters as they are, and only inside strings.
    for c in plain.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// A failure the fake reports by webhook after accepting the send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LateFailure {
    pub code: u32,
    /// Whether `sent` comes before `failed`.
    pub sent_first: bool,
}

/// An accepted send, as its statuses need it.
pub(super) struct SentMessage<'a> {
    pub wamid: &'a str,
    pub recipient_id: &'a str,
    pub phone_number_id: &'a str,
    pub biz_opaque_callback_data: Option<&'a str>,
    pub failure: Option<LateFailure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Sent,
    Delivered,
    Read,
    Failed(u32),
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Sent => "sent",
            Step::Delivered => "delivered",
            Step::Read => "read",
            Step::Failed(_) => "failed",
        }
    }
}

/// A configured number of milliseconds, capped at [`MAX_DELAY_MS`] so time sums cannot overflow.
fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms.min(MAX_DELAY_MS))
}

/// A status waiting for its time.
struct Queued {
    phone_number_id: String,
    status: Value,
}

/// The webhook part of the fake's data, under its lock.
#[derive(Default)]
pub(super) struct Queue {
    /// By due time, then queueing order.
    waiting: BTreeMap<(Instant, u64), Queued>,
    queued: u64,
    /// POSTs taken from the queue whose last attempt has not ended.
    in_flight: usize,
    posts: Vec<WebhookPost>,
    seq: u64,
    /// Bumped by a reset, so POSTs from before are neither recorded nor retried.
    generation: u64,
}

impl Queue {
    pub(super) fn clear_posts(&mut self) -> usize {
        std::mem::take(&mut self.posts).len()
    }

    pub(super) fn reset(&mut self) {
        *self = Queue { seq: self.seq, generation: self.generation + 1, ..Queue::default() };
    }

    fn push(&mut self, due: Instant, phone_number_id: &str, status: Value) {
        self.queued += 1;
        self.waiting.insert((due, self.queued), Queued { phone_number_id: phone_number_id.to_owned(), status });
    }

    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight == 0
    }

    /// Records an attempt unless a reset came in between.
    fn record(&mut self, generation: u64, mut post: WebhookPost) {
        if generation == self.generation {
            self.seq += 1;
            post.seq = self.seq;
            self.posts.push(post);
        }
    }
}

/// Where and how a POST goes.
#[derive(Clone)]
struct Target {
    url: String,
    secret: Option<String>,
    generation: u64,
}

/// One POST taken from the queue, with what its retries need.
struct Batch {
    target: Target,
    payload: Value,
    backoff: Duration,
}

impl Data {
    /// Queues the statuses of an accepted send answered `after` from now; false when no
    /// webhook URL is configured.
    pub(super) fn queue_statuses(&mut self, message: &SentMessage, after: Duration) -> bool {
        let config = &self.config;
        if config.webhook_url.is_none() {
            return false;
        }
        let steps = steps(config, message.failure);

        // Shuffled, the statuses are posted at the same delays in another order; each keeps the
        // timestamp of its natural time, as Meta's keep the time of the event.
        let mut order: Vec<usize> = (0..steps.len()).collect();
        let mut post_delays: Vec<u64> = steps.iter().map(|(_, delay)| *delay).collect();
        if config.shuffle {
            shuffle_out_of_order(&mut order);
            post_delays.sort_unstable();
        }

        let after = after.min(millis(MAX_DELAY_MS));
        let start = Instant::now() + after;
        let start_ms = now_ms() + after.as_millis() as u64;
        let conversation_id = uuid::Uuid::new_v4().simple().to_string();
        let copy_after = millis(config.batch_window_ms) + Duration::from_millis(1);
        let duplicate = config.duplicate;
        for (&i, post_delay) in order.iter().zip(post_delays) {
            let (step, delay) = steps[i];
            let timestamp = (start_ms + millis(delay).as_millis() as u64) / 1000;
            let status = status_object(message, step, timestamp, &conversation_id);
            let due = start + millis(post_delay);
            self.webhooks.push(due, message.phone_number_id, status.clone());
            if duplicate {
                self.webhooks.push(due + copy_after, message.phone_number_id, status);
            }
        }
        true
    }

    /// Takes the statuses due by the end of the batch window, as POSTs of at most
    /// `statuses_per_post`; they count as in flight until their last attempt ends.
    fn take_due(&mut self) -> Vec<Batch> {
        let Some(target) = self.webhook_target() else {
            // The URL went away since they were queued: nowhere to post them.
            self.webhooks.waiting.clear();
            return Vec::new();
        };
        let horizon = Instant::now() + millis(self.config.batch_window_ms);
        let later = self.webhooks.waiting.split_off(&(horizon, u64::MAX));
        let due: Vec<Queued> = std::mem::replace(&mut self.webhooks.waiting, later).into_values().collect();
        let backoff = millis(self.config.retry_backoff_ms);
        // `set_config` does not validate, and `chunks(0)` would panic.
        let per_post = self.config.statuses_per_post.clamp(1, MAX_STATUSES_PER_POST);
        let batches: Vec<Batch> = due
            .chunks(per_post)
            .map(|chunk| Batch { target: target.clone(), payload: statuses_payload(chunk), backoff })
            .collect();
        self.webhooks.in_flight += batches.len();
        batches
    }

    /// Where a webhook posted now goes; `None` without a webhook URL.
    fn webhook_target(&self) -> Option<Target> {
        let url = self.config.webhook_url.clone()?;
        Some(Target { url, secret: self.config.app_secret.clone(), generation: self.webhooks.generation })
    }
}

/// The statuses of an accepted send with their delays: `sent`, `delivered` and `read` (unless
/// never read), or the late failure, after `sent` when it comes first.
fn steps(config: &FakeConfig, failure: Option<LateFailure>) -> Vec<(Step, u64)> {
    match failure {
        None => {
            let mut steps = vec![(Step::Sent, config.sent_delay_ms), (Step::Delivered, config.delivered_delay_ms)];
            steps.extend(config.read_delay_ms.map(|read| (Step::Read, read)));
            steps
        }
        Some(LateFailure { code, sent_first: true }) => {
            vec![(Step::Sent, config.sent_delay_ms), (Step::Failed(code), config.delivered_delay_ms)]
        }
        Some(LateFailure { code, sent_first: false }) => vec![(Step::Failed(code), config.sent_delay_ms)],
    }
}

/// One status as Meta posts it.
fn status_object(message: &SentMessage, step: Step, timestamp: u64, conversation_id: &str) -> Value {
    let mut status = Map::new();
    status.insert("id".into(), json!(message.wamid));
    status.insert("status".into(), json!(step.name()));
    status.insert("timestamp".into(), json!(timestamp.to_string()));
    status.insert("recipient_id".into(), json!(message.recipient_id));
    if let Some(data) = message.biz_opaque_callback_data {
        status.insert("biz_opaque_callback_data".into(), json!(data));
    }
    // Per-message pricing (Meta's since July 2025); the conversation object as API versions
    // up to v23.0 still carry it.
    let pricing = json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"});
    match step {
        Step::Sent => {
            let expiration = (timestamp + 24 * 3600).to_string();
            let conversation =
                json!({"id": conversation_id, "expiration_timestamp": expiration, "origin": {"type": "marketing"}});
            status.insert("conversation".into(), conversation);
            status.insert("pricing".into(), pricing);
        }
        Step::Delivered => {
            status.insert("conversation".into(), json!({"id": conversation_id, "origin": {"type": "marketing"}}));
            status.insert("pricing".into(), pricing);
        }
        Step::Read => {}
        Step::Failed(code) => {
            let (_, title) = error_for(code);
            let error = json!({
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": title},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            });
            status.insert("errors".into(), json!([error]));
        }
    }
    Value::Object(status)
}

/// One POST's payload: a change per phone number id, in order of first appearance.
fn statuses_payload(statuses: &[Queued]) -> Value {
    let mut changes: Vec<(&str, Vec<Value>)> = Vec::new();
    for queued in statuses {
        match changes.iter_mut().find(|(id, _)| *id == queued.phone_number_id) {
            Some((_, list)) => list.push(queued.status.clone()),
            None => changes.push((&queued.phone_number_id, vec![queued.status.clone()])),
        }
    }
    let changes = changes.into_iter().map(|(id, list)| change("messages", id, [("statuses", json!(list))])).collect();
    envelope(changes)
}

/// `{"object": "whatsapp_business_account", "entry": [{"id": <WABA>, "changes": …}]}`.
fn envelope(changes: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": changes}]})
}

/// A change whose value carries the product, the metadata and then `fields`.
fn change<const N: usize>(field: &str, phone_number_id: &str, fields: [(&str, Value); N]) -> Value {
    let mut value = Map::new();
    value.insert("messaging_product".into(), json!("whatsapp"));
    value.insert(
        "metadata".into(),
        json!({"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id}),
    );
    value.extend(fields.map(|(key, items)| (key.to_owned(), items)));
    json!({"field": field, "value": value})
}

/// The webhook Meta posts when a user stops marketing messages.
fn opt_out_payload(phone_number_id: &str, wa_id: &str, name: &str, timestamp: u64) -> Value {
    let preference = json!({
        "wa_id": wa_id,
        "detail": "User requested to stop marketing messages",
        "category": "marketing_messages",
        "value": "stop",
        "timestamp": timestamp,
    });
    let contact = json!({"wa_id": wa_id, "profile": {"name": name}});
    envelope(vec![change(
        "user_preferences",
        phone_number_id,
        [("contacts", json!([contact])), ("user_preferences", json!([preference]))],
    )])
}

/// `(wamid, status)` of every status in a payload.
fn posted_statuses(payload: &Value) -> Vec<(String, String)> {
    fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
        value.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }
    items(payload, "entry")
        .iter()
        .flat_map(|entry| items(entry, "changes"))
        .flat_map(|change| items(&change["value"], "statuses"))
        .map(|status| {
            let text = |key: &str| status.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            (text("id"), text("status"))
        })
        .collect()
}

/// Reorders `order` at random, never leaving it in ascending order when it has two or more
/// items (so a shuffled message always arrives out of order).
fn shuffle_out_of_order(order: &mut [usize]) {
    for i in (1..order.len()).rev() {
        order.swap(i, random_below(i as u64 + 1) as usize);
    }
    if order.is_sorted() {
        order.reverse();
    }
}

/// What the delivery worker shares with every clone of the state.
#[derive(Default)]
pub(super) struct Worker {
    started: AtomicBool,
    wake: Notify,
    client: OnceLock<reqwest::Client>,
}

impl FakeState {
    /// Every webhook POST attempt so far, in recording order.
    pub fn webhooks(&self) -> Vec<WebhookPost> {
        self.lock().webhooks.posts.clone()
    }

    /// How many webhook POSTs are recorded (without copying them).
    pub fn webhook_count(&self) -> usize {
        self.lock().webhooks.posts.len()
    }

    /// Forgets the recorded webhook POSTs; returns how many there were.
    pub fn clear_webhooks(&self) -> usize {
        self.lock().webhooks.clear_posts()
    }

    /// Whether no status is waiting and no POST is under way (retries included).
    pub fn webhooks_idle(&self) -> bool {
        self.lock().webhooks.idle()
    }

    /// Waits until [`FakeState::webhooks_idle`], at most `timeout`; returns whether it is.
    pub async fn wait_for_webhooks_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        while !self.webhooks_idle() {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Starts the delivery worker on first use and tells it the queue changed.
    pub(super) fn wake_webhook_worker(&self) {
        if !self.worker.started.swap(true, Ordering::SeqCst) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(deliver_statuses(self.clone()));
                }
                Err(_) => {
                    self.worker.started.store(false, Ordering::SeqCst);
                    tracing::warn!("status webhooks need a tokio runtime; they stay queued");
                    return;
                }
            }
        }
        self.worker.wake.notify_one();
    }

    fn client(&self) -> &reqwest::Client {
        self.worker.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(POST_TIMEOUT)
                .build()
                .unwrap_or_default()
        })
    }

    /// Where a webhook posted now goes, or the reason it cannot be posted.
    fn target(&self) -> Result<Target, MetaError> {
        let target = self.lock().webhook_target();
        target.ok_or_else(|| MetaError::invalid("no webhook_url is configured (POST /_fake/config)"))
    }

    /// One POST of `body` (the Meta serialisation of `payload`), signed when there is a secret;
    /// recorded and returned.
    async fn post_once(&self, target: &Target, payload: &Value, body: &Bytes, attempt: u32) -> WebhookPost {
        let at_ms = now_ms();
        let mut request =
            self.client().post(&target.url).header(http::header::CONTENT_TYPE, "application/json").body(body.clone());
        if let Some(secret) = &target.secret {
            request = request.header(
                shared::adapters::signature::HEADER,
                shared::adapters::signature::sign(secret.as_bytes(), body),
            );
        }
        let (status, error) = match request.send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(e) => (None, Some(error_chain(&e))),
        };
        let post = WebhookPost {
            seq: 0,
            at_ms,
            attempt,
            url: target.url.clone(),
            payload: payload.clone(),
            statuses: posted_statuses(payload),
            status,
            error,
        };
        tracing::debug!(url = %post.url, attempt, status, statuses = post.statuses.len(), "fake WhatsApp webhook");
        self.lock().webhooks.record(target.generation, post.clone());
        post
    }

    /// Posts a batch until the receiver answers 200, at most [`WEBHOOK_ATTEMPTS`] times, the
    /// wait doubling between tries.
    async fn post_with_retries(&self, batch: Batch) {
        let body = Bytes::from(meta_json(&batch.payload));
        let mut backoff = batch.backoff;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let post = self.post_once(&batch.target, &batch.payload, &body, attempt).await;
            if post.succeeded() || self.lock().webhooks.generation != batch.target.generation {
                break;
            }
            if attempt == WEBHOOK_ATTEMPTS {
                tracing::warn!(url = %post.url, statuses = post.statuses.len(), "fake WhatsApp webhook given up");
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        let mut data = self.lock();
        if data.webhooks.generation == batch.target.generation {
            data.webhooks.in_flight = data.webhooks.in_flight.saturating_sub(1);
        }
    }
}

/// The delivery worker: sleeps until the earliest status is due (or the queue changes), then
/// posts everything due within the batch window.
async fn deliver_statuses(state: FakeState) {
    loop {
        let next = state.lock().webhooks.waiting.keys().next().map(|(due, _)| *due);
        match next {
            None => state.worker.wake.notified().await,
            Some(due) if due > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = state.worker.wake.notified() => {}
                }
            }
            Some(_) => {
                let batches = state.lock().take_due();
                for batch in batches {
                    let state = state.clone();
                    tokio::spawn(async move { state.post_with_retries(batch).await });
                }
            }
        }
    }
}

// ---- HTTP ----

pub(super) async fn list(State(state): State<FakeState>) -> Response {
    answer("webhooks", state.webhooks())
}

pub(super) async fn clear(State(state): State<FakeState>) -> Response {
    answer("cleared", state.clear_webhooks())
}

/// Posts a payload once, now, and answers with the attempt (the receiver's status included).
async fn post_now(state: &FakeState, payload: Value) -> Result<Response, MetaError> {
    let target = state.target()?;
    let body = Bytes::from(meta_json(&payload));
    let post = state.post_once(&target, &payload, &body, 1).await;
    Ok(answer("webhook", post))
}

/// `POST /_fake/webhooks`: any JSON body, posted as it is.
pub(super) async fn post_payload(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    post_now(&state, control_body(body).await?).await
}

/// The body of `POST /_fake/opt-out`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOut {
    to: String,
    phone_number_id: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /_fake/opt-out`: the user `to` stops marketing messages from `phone_number_id`.
pub(super) async fn opt_out(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let opt_out: OptOut = control_body(body).await?;
    let Some(to) = normalize_number(&opt_out.to) else {
        return Err(MetaError::invalid(format!("to {:?} is not a phone number", opt_out.to)));
    };
    if opt_out.phone_number_id.is_empty() {
        return Err(MetaError::invalid("phone_number_id must not be empty"));
    }
    let name = opt_out.name.as_deref().unwrap_or(DEFAULT_PROFILE_NAME);
    let payload = opt_out_payload(&opt_out.phone_number_id, wa_id(&to), name, now_ms() / 1000);
    post_now(&state, payload).await
}

/// The body of `POST /_fake/inbound`: a person (`from`) writes `text` to `phone_number_id`, as
/// a text message, or (`button: true`) by pressing a quick-reply button of that text, in reply
/// to the message `context` (a wamid) when given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundText {
    pub from: String,
    pub phone_number_id: String,
    pub text: String,
    #[serde(default)]
    pub button: bool,
    #[serde(default)]
    pub context: Option<String>,
}

/// `POST /_fake/inbound`: posts Meta's `messages` webhook of an inbound message.
pub(super) async fn inbound(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let message: InboundText = control_body(body).await?;
    Ok(answer("webhook", state.post_inbound(message).await.map_err(MetaError::invalid)?))
}

/// The body of `POST /_fake/template-status`: Meta's news of a template — a status `event`
/// (`APPROVED`, `PAUSED`, `DISABLED`, `REJECTED`, `REINSTATED`, …, with an optional `reason`) or
/// a `quality` score (`GREEN`, `YELLOW`, `RED`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateNews {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub quality: Option<String>,
}

/// The send error of a template Meta stopped with `event` (none: it sends again).
fn stop_code(event: &str) -> Option<u32> {
    match event {
        "PAUSED" => Some(132015),
        "DISABLED" | "PENDING_DELETION" => Some(132016),
        "REJECTED" => Some(132001),
        _ => None,
    }
}

/// `POST /_fake/template-status`: posts Meta's `message_template_status_update` (or, with
/// `quality`, `message_template_quality_update`) webhook; from then on, sends with a template
/// it paused, disabled or rejected fail as Meta's do (132015, 132016, 132001), until an event
/// such as `APPROVED` or `REINSTATED`.
pub(super) async fn template_status(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let news: TemplateNews = control_body(body).await?;
    Ok(answer("webhook", state.post_template_news(news).await.map_err(MetaError::invalid)?))
}

impl FakeState {
    /// Posts Meta's `messages` webhook of an inbound message now (once).
    pub async fn post_inbound(&self, m: InboundText) -> Result<WebhookPost, String> {
        let Some(from) = normalize_number(&m.from) else {
            return Err(format!("from {:?} is not a phone number", m.from));
        };
        if m.phone_number_id.is_empty() || m.text.is_empty() {
            return Err("phone_number_id and text must not be empty".into());
        }
        let wa = wa_id(&from);
        let mut message =
            json!({"from": wa, "id": format!("wamid.in.{}", now_ms()), "timestamp": (now_ms() / 1000).to_string()});
        if m.button {
            message["type"] = json!("button");
            message["button"] = json!({"payload": m.text, "text": m.text});
        } else {
            message["type"] = json!("text");
            message["text"] = json!({"body": m.text});
        }
        if let Some(context) = &m.context {
            message["context"] = json!({"from": DISPLAY_PHONE_NUMBER, "id": context});
        }
        let contact = json!({"wa_id": wa, "profile": {"name": DEFAULT_PROFILE_NAME}});
        let payload = envelope(vec![change(
            "messages",
            &m.phone_number_id,
            [("contacts", json!([contact])), ("messages", json!([message]))],
        )]);
        let target = self.target().map_err(|_| "no webhook_url is configured".to_string())?;
        let body = Bytes::from(meta_json(&payload));
        Ok(self.post_once(&target, &payload, &body, 1).await)
    }

    /// Posts Meta's webhook of `news` now (once) and stops or releases the template's sends;
    /// see `POST /_fake/template-status`.
    pub async fn post_template_news(&self, news: TemplateNews) -> Result<WebhookPost, String> {
        if news.name.is_empty() || news.language.is_empty() {
            return Err("name and language must not be empty".into());
        }
        let named = |mut value: Value| {
            value["message_template_id"] = json!(1_000_000 + news.name.len());
            value["message_template_name"] = json!(news.name);
            value["message_template_language"] = json!(news.language);
            value
        };
        let (field, value) = match (&news.event, &news.quality) {
            (Some(event), None) => {
                let key = (news.name.clone(), news.language.clone());
                match stop_code(event) {
                    Some(code) => self.lock().stopped_templates.insert(key, code),
                    None => self.lock().stopped_templates.remove(&key),
                };
                let reason = news.reason.as_deref().unwrap_or("NONE");
                ("message_template_status_update", named(json!({"event": event, "reason": reason})))
            }
            (None, Some(quality)) => {
                let value = json!({"previous_quality_score": "GREEN", "new_quality_score": quality});
                ("message_template_quality_update", named(value))
            }
            _ => return Err("give either event or quality".into()),
        };
        let payload = json!({"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "time": now_ms() / 1000, "changes": [{"field": field, "value": value}]}]});
        let target = self.target().map_err(|_| "no webhook_url is configured".to_string())?;
        let body = Bytes::from(meta_json(&payload));
        Ok(self.post_once(&target, &payload, &body, 1).await)
    }
}

/// An error with its causes ("error sending request: … : connection refused"), so that a
/// failed POST says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_escapes_everything_beyond_ascii() {
        assert_eq!(meta_json(&json!("Zoë 😀")), r#""Zo\u00eb \ud83d\ude00""#);
        assert_eq!(meta_json(&json!({"naïve": ["ü", "a/b", "\n"]})), r#"{"na\u00efve":["\u00fc","a/b","\n"]}"#);
        let value = json!({"name": "Zoë 😀 — 日本", "n": 1});
        let escaped = meta_json(&value);
        assert!(escaped.is_ascii());
        assert_eq!(serde_json::from_str::<Value>(&escaped).ok(), Some(value));
    }

    /// Fake data with a webhook URL, so statuses can be queued and taken.
    fn data_with_webhook_url() -> Data {
        let mut data = Data::default();
        data.config.webhook_url = Some("http://127.0.0.1:9/webhooks".into());
        data
    }

    fn queued(phone_number_id: &str, i: usize) -> Queued {
        Queued {
            phone_number_id: phone_number_id.into(),
            status: json!({"id": format!("wamid.{i}"), "status": "sent"}),
        }
    }

    #[test]
    fn a_payload_has_one_change_per_phone_number_id_in_order() {
        let statuses = [queued("111", 0), queued("222", 1), queued("111", 2)];
        let payload = statuses_payload(&statuses);
        assert_eq!(payload["object"], "whatsapp_business_account");
        assert_eq!(payload["entry"][0]["id"], WABA_ID);
        let changes = payload["entry"][0]["changes"].as_array().cloned().unwrap_or_default();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["field"], "messages");
        assert_eq!(changes[0]["value"]["messaging_product"], "whatsapp");
        assert_eq!(changes[0]["value"]["metadata"]["phone_number_id"], "111");
        assert_eq!(changes[1]["value"]["metadata"]["phone_number_id"], "222");
        let ids = |c: &Value| c["value"]["statuses"].as_array().map(|s| s.iter().map(|s| s["id"].clone()).collect());
        assert_eq!(ids(&changes[0]), Some(vec![json!("wamid.0"), json!("wamid.2")]));
        assert_eq!(ids(&changes[1]), Some(vec![json!("wamid.1")]));
        let pairs = posted_statuses(&payload);
        assert_eq!(
            pairs,
            [("wamid.0", "sent"), ("wamid.2", "sent"), ("wamid.1", "sent")].map(|(a, b)| (a.into(), b.into()))
        );
    }

    #[test]
    fn due_statuses_are_split_into_posts_of_at_most_a_thousand() {
        let mut data = data_with_webhook_url();
        let now = Instant::now();
        for i in 0..2100 {
            data.webhooks.push(now, "111", queued("111", i).status);
        }
        data.webhooks.push(now + Duration::from_secs(60), "111", json!({"id": "later", "status": "read"}));
        let batches = data.take_due();
        let sizes: Vec<usize> = batches.iter().map(|b| posted_statuses(&b.payload).len()).collect();
        assert_eq!(sizes, [1000, 1000, 100]);
        assert_eq!(posted_statuses(&batches[1].payload)[0].0, "wamid.1000");
        assert_eq!(data.webhooks.in_flight, 3);
        assert_eq!(data.webhooks.waiting.len(), 1, "the later status waits");
    }

    #[test]
    fn statuses_per_post_sets_the_size_of_the_posts() {
        let due_now = |per_post: usize, n: usize| {
            let mut data = data_with_webhook_url();
            data.config.statuses_per_post = per_post;
            for i in 0..n {
                data.webhooks.push(Instant::now(), "111", queued("111", i).status);
            }
            let batches = data.take_due();
            assert_eq!(data.webhooks.in_flight, batches.len());
            batches.iter().map(|b| posted_statuses(&b.payload).len()).collect::<Vec<_>>()
        };
        assert_eq!(due_now(1, 5), [1; 5]);
        assert_eq!(due_now(2, 5), [2, 2, 1]);
        // Out of range through set_config, which does not validate: clamped, not a panic.
        assert_eq!(due_now(0, 3), [1; 3]);
        assert_eq!(due_now(5000, 2500), [1000, 1000, 500]);
    }

    #[test]
    fn huge_delays_are_capped_rather_than_overflowing() {
        let mut data = data_with_webhook_url();
        data.config.read_delay_ms = Some(u64::MAX);
        data.config.batch_window_ms = u64::MAX;
        data.config.duplicate = true;
        let message = SentMessage {
            wamid: "wamid.1",
            recipient_id: "16505551234",
            phone_number_id: "111",
            biz_opaque_callback_data: None,
            failure: None,
        };
        assert!(data.queue_statuses(&message, Duration::from_millis(u64::MAX)));
        assert_eq!(data.webhooks.waiting.len(), 6);
        assert!(data.take_due().is_empty(), "all a day or more away");
    }

    #[test]
    fn shuffled_orders_are_never_the_natural_one() {
        for _ in 0..50 {
            let mut order = [0, 1, 2];
            shuffle_out_of_order(&mut order);
            assert_ne!(order, [0, 1, 2]);
            let mut sorted = order;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2]);
        }
        let mut one = [0];
        shuffle_out_of_order(&mut one);
        assert_eq!(one, [0]);
    }

    #[test]
    fn an_opt_out_is_a_user_preferences_change() {
        let payload = opt_out_payload("106540352242922", "16505551234", "Zoë", 1_767_225_600);
        let change = &payload["entry"][0]["changes"][0];
        assert_eq!(change["field"], "user_preferences");
        assert_eq!(change["value"]["metadata"]["phone_number_id"], "106540352242922");
        assert_eq!(change["value"]["contacts"], json!([{"wa_id": "16505551234", "profile": {"name": "Zoë"}}]));
        let preference = &change["value"]["user_preferences"][0];
        assert_eq!(preference["category"], "marketing_messages");
        assert_eq!(preference["value"], "stop");
        assert_eq!(preference["timestamp"], 1_767_225_600);
        assert!(posted_statuses(&payload).is_empty());
    }
}
