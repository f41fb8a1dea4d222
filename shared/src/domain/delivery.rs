//! Delivery tracking: what WhatsApp's webhooks say, and how a recipient's status moves.
//!
//! Statuses arrive more than once and in any order. The rules below make the end state of a
//! recipient depend only on the set of statuses received, never on their order or repetition:
//!
//! - Ranks: `sent` < `failed` < `delivered` < `read`. A status only ever moves up.
//! - `sent` confirms what the sender recorded already; it changes nothing.
//! - `failed` applies to a message that is only `sent`: it becomes `failed` with Meta's time,
//!   code and message. A failure reported for a message already delivered or read is ignored.
//! - `delivered` and `read` supersede a failure (the message did arrive): the failure's time,
//!   code and message are removed.
//! - `read` implies `delivered`: `delivered_at` is the earliest of the delivered and read times
//!   received. Each `*_at` keeps the earliest of Meta's timestamps for that status.
//! - `played` (voice messages) and unknown statuses are ignored.
//! - A status carrying the service's own key for a recipient whose send left "outcome unknown"
//!   (failed without a message id: the request got no answer) tells that WhatsApp took the
//!   message after all: the recipient adopts the status's message id and is sent (then
//!   delivered, read or failed as the status says), and counted as sent, no longer as failed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;
use super::campaign::{Counters, PricingCategory};
use super::id::Id;
use super::phone::Phone;
use super::recipient::{Recipient, RecipientKey, RecipientStatus};
use super::template::TemplateStatus;

/// One delivery status of a message, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub wamid: String,
    pub status: Delivery,
    /// Meta's timestamp, as RFC 3339 UTC.
    pub at: Timestamp,
    /// What the sender put in `biz_opaque_callback_data`: `<campaign id>/<phone number>`.
    pub callback: Option<String>,
    /// On `failed`: Meta's error code and message.
    pub error: Option<(Option<i64>, String)>,
    /// When Meta bills the message (its `pricing` says billable, or its type is `regular`):
    /// the pricing category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed: Option<PricingCategory>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Sent,
    Failed,
    Delivered,
    Read,
}

impl Delivery {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sent" => Some(Delivery::Sent),
            "failed" => Some(Delivery::Failed),
            "delivered" => Some(Delivery::Delivered),
            "read" => Some(Delivery::Read),
            _ => None,
        }
    }
}

/// A `user_preferences` change: the person stopped (or resumed) marketing messages from the
/// business number `phone_number_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    pub phone_number_id: String,
    /// `+` and the digits of the person's WhatsApp id.
    pub phone: Phone,
    pub stop: bool,
}

/// What one webhook POST carries that matters here; everything else is counted as ignored.
/// It is also what the status queue carries (a POST's statuses split in parts if need be).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(default)]
    pub statuses: Vec<StatusUpdate>,
    #[serde(default)]
    pub preferences: Vec<Preference>,
    /// What Meta said of templates (status and quality updates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateNews>,
    /// Texts people sent to a business number (checked for the account's opt-out keywords).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    /// Statuses, changes and preferences that carry nothing to apply (inbound messages,
    /// template updates, `played`, malformed entries).
    #[serde(default)]
    pub ignored: usize,
    /// When the webhook received it (unix seconds): statuses of messages not known yet are
    /// tried again for a day from then.
    #[serde(default)]
    pub received_at: i64,
    /// How many times these statuses were put back (their send not recorded yet).
    #[serde(default)]
    pub attempt: u32,
}

impl Notification {
    /// Splits into parts of at most `statuses` statuses each (the preferences and the ignored
    /// count go with the first), for queue messages of a bounded size.
    pub fn split(self, statuses: usize) -> Vec<Notification> {
        let mut parts: Vec<Notification> = self
            .statuses
            .chunks(statuses.max(1))
            .map(|c| Notification { statuses: c.to_vec(), received_at: self.received_at, ..Default::default() })
            .collect();
        if parts.is_empty() {
            parts.push(Notification { received_at: self.received_at, ..Default::default() });
        }
        parts[0].preferences = self.preferences;
        parts[0].templates = self.templates;
        parts[0].inbound = self.inbound;
        parts[0].ignored = self.ignored;
        parts
    }

    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.preferences.is_empty() && self.templates.is_empty() && self.inbound.is_empty()
    }
}

/// The text of a message a person sent to the business number `phone_number_id`: a `text`
/// message's body, or the title of a button they pressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub phone_number_id: String,
    /// `+` and the digits of the person's WhatsApp id.
    pub from: Phone,
    pub text: String,
    /// A quick-reply button press (`button` or an interactive reply), not typed text.
    #[serde(default)]
    pub button: bool,
    /// The message it answers (`context.id`), when the person replied to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// How long after its delivery an answer to a campaign message is attributed to the campaign.
pub const REPLY_WINDOW_HOURS: i64 = 72;

impl Inbound {
    /// Whether it answers a message delivered at `delivered_at` within [`REPLY_WINDOW_HOURS`].
    pub fn answers_in_time(&self, delivered_at: Option<&Timestamp>) -> bool {
        let time = |t: &Timestamp| chrono::DateTime::parse_from_rfc3339(t).ok();
        let (Some(delivered), Some(at)) = (delivered_at.and_then(time), self.at.as_ref().and_then(time)) else {
            return false;
        };
        at >= delivered && at - delivered <= chrono::Duration::hours(REPLY_WINDOW_HOURS)
    }
}

/// Meta's news of a template of a WhatsApp Business Account (`entry.id`), which it names by
/// name and language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateNews {
    pub business_account_id: String,
    pub name: String,
    pub language: String,
    pub change: TemplateChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TemplateChange {
    /// `message_template_status_update`: Meta's event (`APPROVED`, `PAUSED`, `DISABLED`, …)
    /// and its reason.
    Status { event: String, reason: Option<String> },
    /// `message_template_quality_update`: the new quality score.
    Quality { score: String },
}

impl TemplateNews {
    /// The status the template has after Meta's event (none for events that change no status,
    /// such as `FLAGGED`, and for quality updates).
    pub fn status(&self) -> Option<TemplateStatus> {
        let TemplateChange::Status { event, .. } = &self.change else { return None };
        Some(match event.as_str() {
            "APPROVED" | "REINSTATED" => TemplateStatus::Approved,
            "PENDING" | "IN_APPEAL" => TemplateStatus::Pending,
            "REJECTED" => TemplateStatus::Rejected,
            "PAUSED" => TemplateStatus::Paused,
            "DISABLED" | "PENDING_DELETION" | "ARCHIVED" | "DELETED" => TemplateStatus::Disabled,
            _ => return None,
        })
    }

    /// Whether campaigns using the template must stop: Meta paused, disabled or rejected it.
    pub fn stops_sending(&self) -> bool {
        matches!(self.status(), Some(TemplateStatus::Paused | TemplateStatus::Disabled | TemplateStatus::Rejected))
    }

    /// The `pause_reason` of a campaign stopped by this news.
    pub fn pause_reason(&self) -> String {
        let (event, reason) = match &self.change {
            TemplateChange::Status { event, reason } => (event.as_str(), reason.as_deref()),
            TemplateChange::Quality { score } => (score.as_str(), None),
        };
        let why = reason.filter(|r| !r.is_empty() && *r != "NONE").map(|r| format!(" ({r})")).unwrap_or_default();
        format!(
            "Meta reported the template {} ({}) {event}{why} (message_template_status_update); \
             start the campaign again once the template is approved",
            self.name, self.language
        )
    }
}

/// Meta's timestamps are unix seconds, as a string (statuses) or a number (preferences).
fn timestamp(v: Option<&Value>) -> Option<Timestamp> {
    let secs = match v? {
        Value::String(s) => s.trim().parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    chrono::DateTime::from_timestamp(secs, 0).map(super::format_time)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn status_update(s: &Value) -> Option<StatusUpdate> {
    let status = Delivery::parse(s.get("status")?.as_str()?)?;
    let wamid = text(s, "id").filter(|w| !w.is_empty())?;
    let at = timestamp(s.get("timestamp"))?;
    let error = (status == Delivery::Failed).then(|| {
        let e = s.get("errors").and_then(|e| e.get(0)).cloned().unwrap_or(Value::Null);
        let details = e.get("error_data").and_then(|d| d.get("details")).and_then(Value::as_str);
        let message = details
            .or_else(|| e.get("message").and_then(Value::as_str))
            .or_else(|| e.get("title").and_then(Value::as_str));
        (e.get("code").and_then(Value::as_i64), message.unwrap_or("failed (no reason given)").to_string())
    });
    let billed = s.get("pricing").and_then(|p| {
        let billable = match p.get("billable").and_then(Value::as_bool) {
            Some(b) => b,
            None => p.get("type").and_then(Value::as_str) == Some("regular"),
        };
        billable.then(|| PricingCategory::of_meta(p.get("category").and_then(Value::as_str).unwrap_or_default()))
    });
    Some(StatusUpdate { wamid, status, at, callback: text(s, "biz_opaque_callback_data"), error, billed })
}

fn preference(phone_number_id: &str, p: &Value) -> Option<Preference> {
    if p.get("category")?.as_str()? != "marketing_messages" {
        return None;
    }
    let stop = match p.get("value")?.as_str()? {
        "stop" => true,
        "resume" => false,
        _ => return None,
    };
    let phone = Phone::from_wa_id(p.get("wa_id")?.as_str()?.trim_start_matches('+'))?;
    Some(Preference { phone_number_id: phone_number_id.to_string(), phone, stop })
}

/// Reads a webhook body. Only a body that is not a JSON object is an error (Meta would
/// only send it again); anything inside it that cannot be used — an `entry` or `changes`
/// that is not a list, a change that is not an object or has no `field`, a status without
/// its parts — is counted in [`Notification::ignored`].
pub fn parse(body: &[u8]) -> Result<Notification, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("the webhook body is not a WhatsApp notification: {e}"))?;
    let Value::Object(payload) = payload else {
        return Err("the webhook body is not a WhatsApp notification: a JSON object is expected".into());
    };
    let mut n = Notification::default();
    for entry in items(payload.get("entry"), &mut n) {
        let business = entry.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        for change in items(entry.get("changes"), &mut n) {
            match (change.get("field").and_then(Value::as_str), change.get("value")) {
                (Some(field), Some(value)) => read_change(&business, field, value, &mut n),
                _ => n.ignored += 1,
            }
        }
    }
    Ok(n)
}

/// The objects of a list that may be missing (nothing to read) or of another shape (ignored).
fn items<'v>(list: Option<&'v Value>, n: &mut Notification) -> Vec<&'v serde_json::Map<String, Value>> {
    let Some(list) = list else { return Vec::new() };
    let Some(list) = list.as_array() else {
        n.ignored += 1;
        return Vec::new();
    };
    let objects: Vec<_> = list.iter().filter_map(Value::as_object).collect();
    n.ignored += list.len() - objects.len();
    objects
}

fn read_change(business: &str, field: &str, value: &Value, n: &mut Notification) {
    let list = |key: &str| value.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    match field {
        "messages" => {
            for s in list("statuses") {
                match status_update(&s) {
                    // A test send's statuses concern no recipient.
                    Some(u) if u.callback.as_deref().is_some_and(is_test_send) => n.ignored += 1,
                    Some(u) => n.statuses.push(u),
                    None => n.ignored += 1,
                }
            }
            let id = value.get("metadata").and_then(|m| text(m, "phone_number_id")).unwrap_or_default();
            for m in list("messages") {
                match inbound(&id, &m) {
                    Some(i) => n.inbound.push(i),
                    None => n.ignored += 1,
                }
            }
        }
        "user_preferences" => {
            let id = value.get("metadata").and_then(|m| text(m, "phone_number_id")).unwrap_or_default();
            for p in list("user_preferences") {
                match preference(&id, &p) {
                    Some(p) => n.preferences.push(p),
                    None => n.ignored += 1,
                }
            }
        }
        "message_template_status_update" | "message_template_quality_update" => {
            match template_news(business, field, value) {
                Some(news) => n.templates.push(news),
                None => n.ignored += 1,
            }
        }
        _ => n.ignored += 1,
    }
}

/// An inbound message with a text: `text.body`, `button.text` (a quick reply to a template) or
/// an interactive reply's title. Other kinds (media, reactions, …) carry nothing to apply.
fn inbound(phone_number_id: &str, m: &Value) -> Option<Inbound> {
    let (body, button) = match m.get("type")?.as_str()? {
        "text" => (m.get("text")?.get("body")?.as_str()?, false),
        "button" => (m.get("button")?.get("text")?.as_str()?, true),
        "interactive" => {
            let reply = m.get("interactive")?;
            (reply.get("button_reply").or_else(|| reply.get("list_reply"))?.get("title")?.as_str()?, true)
        }
        _ => return None,
    };
    let from = Phone::from_wa_id(m.get("from")?.as_str()?.trim_start_matches('+'))?;
    let context = m.get("context").and_then(|c| text(c, "id"));
    (!phone_number_id.is_empty()).then(|| Inbound {
        phone_number_id: phone_number_id.into(),
        from,
        text: body.into(),
        button,
        context,
        at: timestamp(m.get("timestamp")),
    })
}

fn template_news(business: &str, field: &str, value: &Value) -> Option<TemplateNews> {
    let change = if field == "message_template_status_update" {
        TemplateChange::Status { event: text(value, "event")?, reason: text(value, "reason") }
    } else {
        TemplateChange::Quality { score: text(value, "new_quality_score")? }
    };
    Some(TemplateNews {
        business_account_id: Some(business).filter(|b| !b.is_empty())?.to_string(),
        name: text(value, "message_template_name")?,
        language: text(value, "message_template_language")?,
        change,
    })
}

/// What a test send (`POST /api/campaigns/{id}/test`) puts in `biz_opaque_callback_data`
/// before the campaign's id: its statuses are not a recipient's.
pub const TEST_SEND_CALLBACK: &str = "test/";

fn is_test_send(callback: &str) -> bool {
    callback.starts_with(TEST_SEND_CALLBACK)
}

/// Reads `<campaign id>/<phone number>` (what the sender puts in `biz_opaque_callback_data`).
pub fn callback_key(callback: &str) -> Option<RecipientKey> {
    let mut parts = callback.split('/');
    let (campaign, phone) = (parts.next()?, parts.next()?);
    let shard = match parts.next() {
        Some(shard) => Some(shard.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RecipientKey { campaign_id: Id::parse(campaign)?, phone: Phone::e164(phone)?, shard })
}

/// The part of a recipient that delivery statuses change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: RecipientStatus,
    /// The message id WhatsApp gave the send (adopted from a status when the send's outcome
    /// was unknown).
    pub wamid: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub failed_at: Option<Timestamp>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// The pricing category Meta billed the message in (once billed, it stays).
    pub billed: Option<PricingCategory>,
}

fn rank(s: RecipientStatus) -> u8 {
    match s {
        RecipientStatus::Pending | RecipientStatus::Sending => 0,
        RecipientStatus::Sent => 1,
        RecipientStatus::Failed => 2,
        RecipientStatus::Delivered => 3,
        RecipientStatus::Read => 4,
    }
}

fn earliest(current: &mut Option<Timestamp>, at: &Timestamp) {
    if current.as_ref().is_none_or(|c| at < c) {
        *current = Some(at.clone());
    }
}

impl Progress {
    pub fn of(r: &Recipient) -> Self {
        Progress {
            status: r.status,
            wamid: r.wamid.clone(),
            delivered_at: r.delivered_at.clone(),
            read_at: r.read_at.clone(),
            failed_at: r.failed_at.clone(),
            error_code: r.error_code,
            error_message: r.error_message.clone(),
            billed: r.billed,
        }
    }

    /// Whether a status of message `wamid` concerns this send: its own message id, or any id
    /// when the send's outcome was unknown (no id, failed) and the status carries its key.
    pub fn concerns(&self, wamid: &str) -> bool {
        match &self.wamid {
            Some(w) => w == wamid,
            None => self.status == RecipientStatus::Failed,
        }
    }

    /// Applies one status by the rules of this module; a status [`Progress::concerns`] must
    /// hold for.
    pub fn apply(&mut self, u: &StatusUpdate) {
        if self.wamid.is_none() && self.status == RecipientStatus::Failed {
            // WhatsApp took the message whose outcome was unknown: it was sent.
            self.wamid = Some(u.wamid.clone());
            self.status = RecipientStatus::Sent;
            (self.failed_at, self.error_code, self.error_message) = (None, None, None);
        }
        let at = &u.at;
        match u.status {
            Delivery::Sent => {}
            Delivery::Failed => match self.status {
                RecipientStatus::Sent => {
                    self.status = RecipientStatus::Failed;
                    self.failed_at = Some(at.clone());
                    let (code, message) = u.error.clone().unzip();
                    (self.error_code, self.error_message) = (code.flatten(), message);
                }
                RecipientStatus::Failed => earliest(&mut self.failed_at, at),
                _ => {}
            },
            Delivery::Delivered | Delivery::Read => {
                if rank(self.status) < rank(RecipientStatus::Sent) {
                    return; // not sent by us (yet): nothing to deliver
                }
                let target =
                    if u.status == Delivery::Read { RecipientStatus::Read } else { RecipientStatus::Delivered };
                if rank(target) > rank(self.status) {
                    self.status = target;
                }
                (self.failed_at, self.error_code, self.error_message) = (None, None, None);
                earliest(&mut self.delivered_at, at);
                // Meta bills a message once it is delivered: its pricing is taken from the
                // statuses that already write the recipient (a `sent` status changes nothing,
                // and stays without a write).
                if self.billed.is_none() {
                    self.billed = u.billed;
                }
                if u.status == Delivery::Read {
                    earliest(&mut self.read_at, at);
                }
            }
        }
    }

    /// What this progress adds to the campaign's counters (those delivery statuses move: sent
    /// only when an unknown outcome turns out sent).
    pub fn counts(&self) -> Counters {
        let s = self.status;
        let mut counts = Counters {
            sent: self.wamid.is_some() as i64,
            delivered: matches!(s, RecipientStatus::Delivered | RecipientStatus::Read) as i64,
            read: (s == RecipientStatus::Read) as i64,
            failed: (s == RecipientStatus::Failed) as i64,
            ..Default::default()
        };
        if let Some(category) = self.billed {
            counts.bill(category);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(status: Delivery, secs: i64) -> StatusUpdate {
        let at = crate::domain::format_time(chrono::DateTime::from_timestamp(secs, 0).unwrap());
        let error = (status == Delivery::Failed).then(|| (Some(131026), "undeliverable".to_string()));
        StatusUpdate { wamid: "wamid.1".into(), status, at, callback: None, error, billed: None }
    }

    fn sent() -> Progress {
        Progress {
            status: RecipientStatus::Sent,
            wamid: Some("wamid.1".into()),
            delivered_at: None,
            read_at: None,
            failed_at: None,
            error_code: None,
            error_message: None,
            billed: None,
        }
    }

    fn permutations(items: &[StatusUpdate]) -> Vec<Vec<StatusUpdate>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, first.clone());
                all.push(p);
            }
        }
        all
    }

    fn fold(updates: &[StatusUpdate]) -> Progress {
        let mut p = sent();
        updates.iter().for_each(|u| p.apply(u));
        p
    }

    #[test]
    fn the_end_state_depends_only_on_the_set_of_statuses() {
        let all = [
            update(Delivery::Sent, 100),
            update(Delivery::Delivered, 105),
            update(Delivery::Read, 110),
            update(Delivery::Failed, 103),
        ];
        // Every subset, in every order, with every status possibly repeated.
        for mask in 1u32..16 {
            let subset: Vec<StatusUpdate> =
                all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, u)| u.clone()).collect();
            let expected = fold(&subset);
            for order in permutations(&subset) {
                assert_eq!(fold(&order), expected, "order {order:?}");
                let doubled: Vec<StatusUpdate> = order.iter().chain(order.iter().rev()).cloned().collect();
                assert_eq!(fold(&doubled), expected, "repeated {doubled:?}");
            }
        }
    }

    #[test]
    fn statuses_move_up_and_read_implies_delivered() {
        let read_only = fold(&[update(Delivery::Read, 110)]);
        assert_eq!(read_only.status, RecipientStatus::Read);
        assert_eq!(read_only.delivered_at.as_deref(), Some("1970-01-01T00:01:50Z"));
        assert_eq!(read_only.counts(), Counters { sent: 1, delivered: 1, read: 1, ..Default::default() });

        let late_delivered = fold(&[update(Delivery::Read, 110), update(Delivery::Delivered, 105)]);
        assert_eq!(late_delivered.status, RecipientStatus::Read);
        assert_eq!(late_delivered.delivered_at.as_deref(), Some("1970-01-01T00:01:45Z"));

        let failed = fold(&[update(Delivery::Failed, 103)]);
        assert_eq!(failed.status, RecipientStatus::Failed);
        assert_eq!((failed.error_code, failed.error_message.as_deref()), (Some(131026), Some("undeliverable")));
        assert_eq!(failed.counts(), Counters { sent: 1, failed: 1, ..Default::default() });

        let delivered_after_failed = fold(&[update(Delivery::Failed, 103), update(Delivery::Delivered, 105)]);
        assert_eq!(delivered_after_failed.status, RecipientStatus::Delivered);
        assert_eq!(delivered_after_failed.error_code, None);
        assert_eq!(delivered_after_failed.failed_at, None);

        assert_eq!(fold(&[update(Delivery::Sent, 100)]), sent());
    }

    #[test]
    fn statuses_of_recipients_never_sent_change_nothing() {
        let mut p = Progress { status: RecipientStatus::Sending, ..sent() };
        for s in [Delivery::Delivered, Delivery::Read, Delivery::Failed] {
            p.apply(&update(s, 100));
        }
        assert_eq!(p.status, RecipientStatus::Sending);
        assert_eq!(p.delivered_at, None);
    }

    #[test]
    fn a_status_for_a_send_whose_outcome_was_unknown_makes_it_sent_and_counts_it_as_such() {
        let unknown = Progress {
            status: RecipientStatus::Failed,
            wamid: None,
            failed_at: Some("t".into()),
            error_message: Some("outcome unknown, not retried to avoid a double send: timeout".into()),
            ..sent()
        };
        assert!(unknown.concerns("wamid.1") && !sent().concerns("wamid.2") && sent().concerns("wamid.1"));
        let pending = Progress { status: RecipientStatus::Pending, wamid: None, ..sent() };
        assert!(!pending.concerns("wamid.1"), "a status never applies to a recipient not sent");
        let all = [update(Delivery::Sent, 100), update(Delivery::Delivered, 105), update(Delivery::Read, 110)];
        let mut ends = Vec::new();
        for order in permutations(&all) {
            let mut p = unknown.clone();
            order.iter().for_each(|u| p.apply(u));
            ends.push(p);
        }
        let end = &ends[0];
        assert!(ends.iter().all(|e| e == end), "{ends:?}");
        assert_eq!(
            (end.status, end.wamid.as_deref(), end.error_message.as_deref()),
            (RecipientStatus::Read, Some("wamid.1"), None)
        );
        let moved = end.counts().minus(unknown.counts());
        assert_eq!(moved, Counters { sent: 1, delivered: 1, read: 1, failed: -1, ..Default::default() });
        // Meta's own failure for it: sent after all, then failed with Meta's reason.
        let mut p = unknown.clone();
        p.apply(&update(Delivery::Failed, 103));
        assert_eq!((p.status, p.error_code), (RecipientStatus::Failed, Some(131026)));
        assert_eq!(p.counts().minus(unknown.counts()), Counters { sent: 1, ..Default::default() });
    }

    #[test]
    fn parses_statuses_preferences_and_ignores_the_rest() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "waba", "changes": [
                { "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "1555", "phone_number_id": "pn1" },
                    "statuses": [
                        { "id": "wamid.A", "status": "delivered", "timestamp": "1700000000", "recipient_id": "1555",
                          "biz_opaque_callback_data": "c1/+1555" },
                        { "id": "wamid.B", "status": "failed", "timestamp": "1700000001", "recipient_id": "1555",
                          "errors": [{ "code": 131026, "title": "Message undeliverable",
                                       "error_data": { "details": "not on WhatsApp" } }] },
                        { "id": "wamid.C", "status": "played", "timestamp": "1700000002" },
                        { "id": "wamid.D", "status": "read" },
                        { "id": "wamid.E", "status": "sent", "timestamp": "1700000002",
                          "biz_opaque_callback_data": "test/c1" }
                    ],
                    "messages": [{ "from": "1555", "id": "wamid.in", "type": "text" }]
                }},
                { "field": "message_template_status_update", "value": { "event": "APPROVED" } },
                { "field": "user_preferences", "value": {
                    "metadata": { "phone_number_id": "pn1" },
                    "user_preferences": [
                        { "wa_id": "4915112345678", "category": "marketing_messages", "value": "stop", "timestamp": 1700000003 },
                        { "wa_id": "4915112345679", "category": "marketing_messages", "value": "resume" },
                        { "wa_id": "x", "category": "marketing_messages", "value": "stop" }
                    ]
                }}
            ]}]
        });
        let n = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(n.statuses.len(), 2);
        assert_eq!(n.statuses[0].at, "2023-11-14T22:13:20Z");
        assert_eq!(n.statuses[0].callback.as_deref(), Some("c1/+1555"));
        assert_eq!(n.statuses[1].error, Some((Some(131026), "not on WhatsApp".to_string())));
        assert_eq!(
            n.preferences,
            vec![
                Preference { phone_number_id: "pn1".into(), phone: "+4915112345678".into(), stop: true },
                Preference { phone_number_id: "pn1".into(), phone: "+4915112345679".into(), stop: false },
            ]
        );
        // played, the status without a timestamp, a test send's, the inbound message, the
        // template update, the bad wa_id
        assert_eq!(n.ignored, 6);
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(b"not json").is_err());
        assert_eq!(parse(b"{}").unwrap(), Notification::default());
        assert!(parse(b"[]").is_err(), "a list is not a notification");
        // Any object is taken; what cannot be used in it is counted, not refused.
        for (odd, ignored) in [
            (r#"{"entry": {}}"#, 1),
            (r#"{"entry": [1, {"changes": "x"}]}"#, 2),
            (r#"{"entry": [{"changes": [{"field": null, "value": {}}, {"field": "messages"}, 7]}]}"#, 3),
            (r#"{"entry": [{"changes": [{"field": "messages", "value": []}]}]}"#, 0),
        ] {
            assert_eq!(parse(odd.as_bytes()).unwrap().ignored, ignored, "{odd}");
        }
    }

    #[test]
    fn callback_keys() {
        let c = "0b6f4c6e-0000-4000-8000-000000000001";
        let key = callback_key(&format!("{c}/+14155550123")).unwrap();
        assert_eq!((key.campaign_id.as_str(), key.phone.as_str()), (c, "+14155550123"));
        assert_eq!(key.shard, None);
        let key = callback_key(&format!("{c}/+14155550123/7")).unwrap();
        assert_eq!((key.phone.as_str(), key.shard), ("+14155550123", Some(7)));
        assert_eq!(key.callback(), format!("{c}/+14155550123/7"));
        assert_eq!(callback_key(&format!("{c}/+14155550123/x")), None);
        assert_eq!(callback_key(&format!("{c}/+14155550123/1/2")), None);
        assert_eq!(callback_key(&format!("{c}/r1")), None);
        assert_eq!(callback_key("c1/+14155550123"), None);
        assert_eq!(callback_key("nothing"), None);
    }

    #[test]
    fn template_news_is_read_by_business_account_name_and_language() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba1", "changes": [
            { "field": "message_template_status_update", "value": {
                "event": "PAUSED", "message_template_id": 7, "message_template_name": "offer",
                "message_template_language": "en_US", "reason": "LOW_QUALITY" }},
            { "field": "message_template_quality_update", "value": {
                "previous_quality_score": "GREEN", "new_quality_score": "RED", "message_template_id": 7,
                "message_template_name": "offer", "message_template_language": "en_US" }},
            { "field": "message_template_status_update", "value": { "event": "FLAGGED",
                "message_template_name": "offer", "message_template_language": "en_US" }},
            { "field": "message_template_status_update", "value": { "event": "PAUSED" }}
        ]}]});
        let n = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!((n.templates.len(), n.ignored), (3, 1), "{n:?}");
        let paused = &n.templates[0];
        assert_eq!((paused.business_account_id.as_str(), paused.name.as_str()), ("waba1", "offer"));
        assert_eq!((paused.status(), paused.stops_sending()), (Some(TemplateStatus::Paused), true));
        assert!(paused.pause_reason().contains("offer (en_US) PAUSED (LOW_QUALITY)"), "{}", paused.pause_reason());
        assert_eq!(n.templates[1].change, TemplateChange::Quality { score: "RED".into() });
        assert_eq!((n.templates[1].status(), n.templates[1].stops_sending()), (None, false));
        assert_eq!((n.templates[2].status(), n.templates[2].stops_sending()), (None, false), "FLAGGED only warns");
        let event = |e: &str| TemplateNews {
            change: TemplateChange::Status { event: e.into(), reason: None },
            ..paused.clone()
        };
        assert_eq!(event("REINSTATED").status(), Some(TemplateStatus::Approved));
        assert!(event("DISABLED").stops_sending() && event("REJECTED").stops_sending());
        assert!(!n.is_empty());
        // The news travels with the first part of a split notification.
        let parts = n.split(1);
        assert_eq!(parts[0].templates.len(), 3);
    }

    #[test]
    fn a_billed_message_counts_once_in_its_category_whatever_the_statuses_repeat() {
        let priced = |status: &str, pricing: Value| {
            let body = json!({"entry": [{"id": "w", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "pn1"},
                "statuses": [{"id": "wamid.1", "status": status, "timestamp": "1700000000", "pricing": pricing}]}}]}]});
            parse(body.to_string().as_bytes()).unwrap().statuses.remove(0)
        };
        let marketing = json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"});
        let free =
            json!({"billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "service"});
        let lite = json!({"pricing_model": "PMP", "type": "regular", "category": "marketing_lite"});
        assert_eq!(priced("sent", marketing.clone()).billed, Some(PricingCategory::Marketing));
        assert_eq!(priced("sent", free).billed, None);
        assert_eq!(priced("delivered", lite).billed, Some(PricingCategory::Marketing), "type regular bills");
        let auth = json!({"billable": true, "category": "authentication_international"});
        assert_eq!(priced("sent", auth).billed, Some(PricingCategory::Authentication));
        // A `sent` status with its pricing changes nothing: no write for it.
        let mut only_sent = sent();
        only_sent.apply(&priced("sent", marketing.clone()));
        assert_eq!(only_sent, sent());
        let mut p = sent();
        for s in ["sent", "delivered", "sent", "read", "delivered"] {
            p.apply(&priced(s, marketing.clone()));
        }
        let mut billed = Counters::default();
        billed.bill(PricingCategory::Marketing);
        assert_eq!(p.counts().billable, billed.billable, "once");
        assert_eq!(sent().counts().billable, [0; 4]);
    }

    #[test]
    fn an_answer_names_the_message_it_answers_and_counts_within_72_hours_of_its_delivery() {
        let body = json!({"entry": [{"id": "w", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "pn1"},
        "messages": [
            {"from": "14155550100", "id": "wamid.in1", "timestamp": "1700000000", "type": "button",
             "context": {"from": "1555", "id": "wamid.out"}, "button": {"payload": "YES", "text": "Yes please"}},
            {"from": "14155550101", "id": "wamid.in2", "timestamp": "1700000000", "type": "text",
             "text": {"body": "hi"}},
            {"from": "14155550102", "id": "wamid.in3", "timestamp": "1700000000", "type": "image", "image": {}}
        ]}}]}]});
        let n = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!((n.inbound.len(), n.ignored), (2, 1));
        let press = &n.inbound[0];
        assert_eq!(
            (press.text.as_str(), press.button, press.context.as_deref()),
            ("Yes please", true, Some("wamid.out"))
        );
        assert_eq!((n.inbound[1].button, n.inbound[1].context.as_deref()), (false, None));
        let at = |secs: i64| crate::domain::format_time(chrono::DateTime::from_timestamp(secs, 0).unwrap());
        assert!(press.answers_in_time(Some(&at(1_700_000_000 - 3600))));
        assert!(press.answers_in_time(Some(&at(1_700_000_000 - 72 * 3600))));
        assert!(!press.answers_in_time(Some(&at(1_700_000_000 - 72 * 3600 - 1))), "past 72 hours");
        assert!(!press.answers_in_time(Some(&at(1_700_000_001))), "before its delivery");
        assert!(!press.answers_in_time(None), "never delivered");
    }
}
