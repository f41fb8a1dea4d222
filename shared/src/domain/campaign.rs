//! Campaigns: their state machine and the checks of create and update.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::account::Account;
use super::daily_cap::Reached;
use super::header::{self, HeaderLocation, HeaderMedia, MEDIA_KEY};
use super::id::Id;
use super::limits::{CAMPAIGN_NAME_CHARS, FIELD_NAME_CHARS, MAPPING_KEY_CHARS, TEMPLATE_PARAMETERS};
use super::recipient::RecipientStatus;
use super::template::{HeaderFormat, Template, TemplateStatus};
use super::window::SendWindow;
use super::{Timestamp, parse_time, required_text};
use crate::error::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Sending,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 6] = [
        CampaignStatus::Draft,
        CampaignStatus::Scheduled,
        CampaignStatus::Sending,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Sending => "sending",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Recipients may be added while nothing has been sent yet.
    pub fn accepts_imports(self) -> bool {
        matches!(self, CampaignStatus::Draft | CampaignStatus::Scheduled)
    }

    /// A campaign may be deleted unless it is sending right now (pause or cancel it first).
    pub fn deletable(self) -> bool {
        self != CampaignStatus::Sending
    }

    /// `PUT` changes campaigns that have not started: drafts, and scheduled ones (whose
    /// schedule follows a new `scheduled_at`).
    pub fn editable(self) -> bool {
        matches!(self, CampaignStatus::Draft | CampaignStatus::Scheduled)
    }
}

/// What a caller (or the sender) can do to a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// draft → sending; paused → sending is a resume.
    Start,
    /// scheduled → sending, at the scheduled time (or later): only while the campaign is still
    /// scheduled for the time the caller read.
    StartScheduled,
    /// draft → scheduled: the campaign starts by itself at its `scheduled_at`.
    Schedule,
    /// scheduled → draft: the scheduled start could not start it (its reason is kept).
    Unschedule,
    /// sending → paused.
    Pause,
    /// draft, scheduled, sending or paused → cancelled, for good.
    Cancel,
    /// sending → completed, once every recipient is processed.
    Complete,
    /// sending or scheduled → paused, by the service (never from the API): Meta paused,
    /// disabled or rejected the campaign's template. A scheduled campaign does not start then.
    Suspend,
    /// completed → sending, after failed recipients were put back to pending; on a sending
    /// campaign, a new dispatch run (so that recipients put back while a run was under way
    /// are read).
    Retry,
}

impl Action {
    /// The statuses the action may start from.
    pub fn from(self) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match self {
            Action::Start => &[Draft, Paused],
            Action::StartScheduled | Action::Unschedule => &[Scheduled],
            Action::Schedule => &[Draft],
            Action::Pause => &[Sending],
            Action::Cancel => &[Draft, Scheduled, Sending, Paused],
            Action::Complete => &[Sending],
            Action::Retry => &[Completed, Sending],
            Action::Suspend => &[Sending, Scheduled],
        }
    }

    pub fn to(self) -> CampaignStatus {
        match self {
            Action::Start | Action::StartScheduled | Action::Retry => CampaignStatus::Sending,
            Action::Schedule => CampaignStatus::Scheduled,
            Action::Unschedule => CampaignStatus::Draft,
            Action::Pause | Action::Suspend => CampaignStatus::Paused,
            Action::Cancel => CampaignStatus::Cancelled,
            Action::Complete => CampaignStatus::Completed,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Start | Action::StartScheduled => "started",
            Action::Schedule => "scheduled",
            Action::Unschedule => "returned to draft",
            Action::Pause | Action::Suspend => "paused",
            Action::Cancel => "cancelled",
            Action::Complete => "completed",
            Action::Retry => "sent again",
        }
    }

    /// Whether a campaign in `status` may take the action.
    pub fn allowed(self, status: CampaignStatus) -> bool {
        self.from().contains(&status)
    }

    /// The action holds only while the campaign's `scheduled_at` is still the one the caller
    /// read: a schedule moved or cleared meanwhile makes it fail (a stale scheduled start).
    pub fn pins_scheduled_at(self) -> bool {
        matches!(self, Action::StartScheduled | Action::Schedule | Action::Unschedule)
    }

    /// The action sends: it waits for a running import to finish (so `total_recipients` is exact).
    pub fn sends(self) -> bool {
        matches!(self, Action::Start | Action::StartScheduled | Action::Retry)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: Id,
    pub name: String,
    pub account_id: Id,
    pub template_id: Id,
    pub template_name: String,
    pub status: CampaignStatus,
    pub total_recipients: u64,
    pub sent_count: u64,
    pub delivered_count: u64,
    pub read_count: u64,
    pub failed_count: u64,
    /// Recipients the senders are done with (accepted or rejected at send). Beyond the spec:
    /// `failed_count` also counts failures reported later by webhook, so progress and
    /// completion are read here.
    #[serde(default)]
    pub processed_count: u64,
    /// Recipients a sender holds at this instant (claimed, outcome not recorded yet). Beyond
    /// the spec; with the others it gives every recipient status's count without a query.
    #[serde(default)]
    pub sending_count: u64,
    /// Billable messages per pricing category (beyond the spec), from Meta's statuses.
    #[serde(default)]
    pub billable: Billable,
    /// Recipients who answered their message within 72 hours of its delivery, and who pressed
    /// one of its quick-reply buttons (beyond the spec).
    #[serde(default)]
    pub replied_count: u64,
    #[serde(default)]
    pub clicked_count: u64,
    pub variable_mapping: BTreeMap<String, String>,
    /// The medium of the template's IMAGE, VIDEO or DOCUMENT header (absent on older items).
    #[serde(default)]
    pub header_media: Option<HeaderMedia>,
    /// The place of the template's LOCATION header (absent on older items).
    #[serde(default)]
    pub header_location: Option<HeaderLocation>,
    /// When recipients may be sent to (absent: any time; see docs/send-windows.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_window: Option<SendWindow>,
    pub scheduled_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why the sender paused the campaign (absent when a person paused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// Why the scheduled start could not start the campaign, which went back to draft
    /// (absent otherwise; cleared by the next change or action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_error: Option<String>,
    /// The current dispatch run, new with every start and resume (internal: never shown).
    #[serde(default, skip_serializing)]
    pub dispatch_run: Option<String>,
    /// How many shards the recipients are spread over (internal: never shown; written once,
    /// when the campaign is created). 0 for campaigns created before recipients were sharded:
    /// theirs are all in the campaign's own partition.
    #[serde(default, skip_serializing)]
    pub recipient_shards: u32,
    /// Set when the campaign was deleted: it is gone for the API at once, and a background job
    /// removes its items (internal: never shown).
    #[serde(default, skip_serializing)]
    pub deleting: Option<String>,
    /// Messages per second over the last minute, as the dispatcher measured it, and when
    /// (unix seconds; internal: shown through [`Campaign::progress`]).
    #[serde(default, skip_serializing)]
    pub measured_rate: Option<f64>,
    #[serde(default, skip_serializing)]
    pub measured_at: Option<i64>,
    /// Until when (unix seconds) the campaign waits for its business's 24-hour cap to make
    /// room (internal: shown as `waiting_for_limit` and `resumes_at` while ahead).
    #[serde(default, skip_serializing)]
    pub limit_until: Option<i64>,
    /// Until when (unix seconds) the recipients left wait for their send window (internal).
    #[serde(default, skip_serializing)]
    pub window_wait_until: Option<i64>,
}

impl Campaign {
    /// How many recipients are in a status (all: `None`), as the campaign's counters tell:
    /// `pending` is every recipient not processed yet (those being sent at this instant among them,
    /// as in its listing); `sending` the claims held; `failed` every failure, at send or later;
    /// `read` is read; `delivered` is delivered but not read; `sent` is accepted by WhatsApp and
    /// neither delivered nor failed later (a later failure is a failure not counted at send, where
    /// every failure is processed and not sent).
    pub fn counted_in(&self, status: Option<RecipientStatus>) -> u64 {
        let c = self;
        use RecipientStatus::*;
        let n = |v: u64| v as i64;
        let failed_at_send = n(c.processed_count) - n(c.sent_count);
        let failed_later = n(c.failed_count) - failed_at_send;
        let count = match status {
            None => n(c.total_recipients),
            Some(Pending) => n(c.total_recipients) - n(c.processed_count),
            Some(Sending) => n(c.sending_count),
            Some(Failed) => n(c.failed_count),
            Some(Read) => n(c.read_count),
            Some(Delivered) => n(c.delivered_count) - n(c.read_count),
            Some(Sent) => n(c.sent_count) - n(c.delivered_count) - failed_later,
        };
        count.max(0) as u64
    }

    /// How far the campaign is: the share of recipients processed, the rate measured over the
    /// last minute while it sends, the time left at the account's pace `rate` (messages per
    /// second; none when the account is gone), and every recipient status's count.
    pub fn progress(&self, rate: Option<u32>, now_unix: i64) -> Progress {
        use RecipientStatus::*;
        let left = self.total_recipients.saturating_sub(self.processed_count);
        let percent = if self.total_recipients == 0 {
            0.0
        } else {
            (1000.0 * self.processed_count as f64 / self.total_recipients as f64).round() / 10.0
        };
        let measured = match (self.status, self.measured_rate, self.measured_at) {
            (CampaignStatus::Sending, Some(r), Some(at)) if now_unix - at <= RATE_MAX_AGE_SECONDS => r,
            _ => 0.0,
        };
        let eta_seconds = match self.status {
            CampaignStatus::Completed => Some(0),
            CampaignStatus::Cancelled => None,
            _ => rate.filter(|r| *r > 0).map(|r| super::sending::seconds_at_pace(left, r).ceil() as u64),
        };
        let counts = [Pending, Sending, Sent, Delivered, Read, Failed]
            .into_iter()
            .map(|s| (s.as_str(), self.counted_in(Some(s))))
            .collect();
        Progress { percent, rate_per_second: (measured * 10.0).round() / 10.0, eta_seconds, counts }
    }
}

impl Campaign {
    /// As [`Campaign::progress`], with the waits for the business's 24-hour cap (`cap` people,
    /// `reached` so far) in `eta_seconds`.
    pub fn progress_under_cap(&self, rate: Option<u32>, cap: u64, reached: &Reached, now_unix: i64) -> Progress {
        let mut progress = self.progress(rate, now_unix);
        if let (Some(rate), Some(_), false) = (rate, progress.eta_seconds, self.status == CampaignStatus::Completed) {
            let left = self.total_recipients.saturating_sub(self.processed_count);
            progress.eta_seconds = Some(super::daily_cap::eta_seconds(left, rate, cap, reached, now_unix));
        }
        progress
    }

    /// Until when (unix seconds) a sending campaign waits for its business's 24-hour cap to
    /// make room, while that is ahead.
    pub fn resumes_at(&self, now_unix: i64) -> Option<i64> {
        self.limit_until.filter(|until| self.status == CampaignStatus::Sending && *until > now_unix)
    }
}

impl Campaign {
    /// What the billable messages cost at the account's prices (none without a price table;
    /// a category without a price counts for nothing).
    pub fn cost(&self, prices: &BTreeMap<PricingCategory, super::account::Price>) -> Option<Cost> {
        let currency = prices.values().next()?.currency.clone();
        let mut by_category = BTreeMap::new();
        let mut amount = 0.0;
        for (category, price) in prices {
            let part = self.billable.get(*category) as f64 * price.amount;
            by_category.insert(category.as_str(), round_money(part));
            amount += part;
        }
        Some(Cost { amount: round_money(amount), currency, by_category })
    }
}

fn round_money(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// A campaign's cost: its billable messages at the account's prices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub amount: f64,
    pub currency: String,
    pub by_category: BTreeMap<&'static str, f64>,
}

/// How old a measured rate may be and still be shown (the dispatcher notes it every few
/// seconds while it has recipients to release).
pub const RATE_MAX_AGE_SECONDS: i64 = 60;

/// A campaign's progress, as `GET /api/campaigns/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Recipients processed (sent or failed at send), in percent of all, to a tenth.
    pub percent: f64,
    /// Messages per second over the last minute while sending (0 otherwise).
    pub rate_per_second: f64,
    /// Seconds until every recipient is processed at the account's pace (0 once completed;
    /// none for a cancelled campaign or one whose account is gone).
    pub eta_seconds: Option<u64>,
    /// Recipients per status (as the recipient listing's `total` for that status).
    pub counts: BTreeMap<&'static str, u64>,
}

/// The pricing categories billable messages are counted in (Meta's `pricing.category` of a
/// status: `marketing_lite` counts as marketing, `authentication_international` as
/// authentication, anything else as service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PricingCategory {
    Marketing,
    Utility,
    Authentication,
    Service,
}

impl PricingCategory {
    pub const ALL: [PricingCategory; 4] = [
        PricingCategory::Marketing,
        PricingCategory::Utility,
        PricingCategory::Authentication,
        PricingCategory::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PricingCategory::Marketing => "marketing",
            PricingCategory::Utility => "utility",
            PricingCategory::Authentication => "authentication",
            PricingCategory::Service => "service",
        }
    }

    pub fn of_meta(category: &str) -> Self {
        match category {
            "marketing" | "marketing_lite" => PricingCategory::Marketing,
            "utility" => PricingCategory::Utility,
            "authentication" | "authentication_international" => PricingCategory::Authentication,
            _ => PricingCategory::Service,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Billable messages of a campaign per pricing category, as Meta's statuses reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billable {
    #[serde(default)]
    pub marketing: u64,
    #[serde(default)]
    pub utility: u64,
    #[serde(default)]
    pub authentication: u64,
    #[serde(default)]
    pub service: u64,
}

impl Billable {
    pub fn get_mut(&mut self, c: PricingCategory) -> &mut u64 {
        match c {
            PricingCategory::Marketing => &mut self.marketing,
            PricingCategory::Utility => &mut self.utility,
            PricingCategory::Authentication => &mut self.authentication,
            PricingCategory::Service => &mut self.service,
        }
    }

    pub fn get(&self, c: PricingCategory) -> u64 {
        match c {
            PricingCategory::Marketing => self.marketing,
            PricingCategory::Utility => self.utility,
            PricingCategory::Authentication => self.authentication,
            PricingCategory::Service => self.service,
        }
    }
}

/// Changes to a campaign's counters. They are kept in a few counter items beside the campaign
/// (see `docs/dynamodb.md`), each change added to one of them together with the recipients it
/// counts, and summed when the campaign is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub processed: i64,
    /// Claims taken less claims ended.
    pub sending: i64,
    /// Billable messages per [`PricingCategory`] (in its order).
    pub billable: [i64; 4],
    /// Recipients who answered their message, and who pressed one of its quick-reply buttons.
    pub replied: i64,
    pub clicked: i64,
}

/// What a recipient holds that its campaign's counters count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub status: RecipientStatus,
    /// WhatsApp accepted its message (it has a message id).
    pub sent: bool,
    pub billed: Option<PricingCategory>,
    pub replied: bool,
    pub clicked: bool,
}

impl Counters {
    /// What one recipient adds to its campaign's counters: the counting of a recount, and of
    /// the changes counted from the table's stream (the difference before and after).
    pub fn of_recipient(r: Counted) -> Counters {
        use RecipientStatus::*;
        let one = |b: bool| b as i64;
        let mut counts = Counters {
            sent: one(r.sent),
            delivered: one(matches!(r.status, Delivered | Read)),
            read: one(r.status == Read),
            failed: one(r.status == Failed),
            processed: one(!matches!(r.status, Pending | Sending)),
            sending: one(r.status == Sending),
            replied: one(r.replied),
            clicked: one(r.clicked),
            ..Default::default()
        };
        if let Some(category) = r.billed {
            counts.bill(category);
        }
        counts
    }

    /// Adds one billable message of `category`.
    pub fn bill(&mut self, category: PricingCategory) {
        self.billable[category.index()] += 1;
    }

    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    pub fn add(&mut self, other: Counters) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.read += other.read;
        self.failed += other.failed;
        self.processed += other.processed;
        self.sending += other.sending;
        for (b, o) in self.billable.iter_mut().zip(other.billable) {
            *b += o;
        }
        self.replied += other.replied;
        self.clicked += other.clicked;
    }

    pub fn minus(mut self, other: Counters) -> Counters {
        self.add(Counters {
            sent: -other.sent,
            delivered: -other.delivered,
            read: -other.read,
            failed: -other.failed,
            processed: -other.processed,
            sending: -other.sending,
            billable: other.billable.map(|b| -b),
            replied: -other.replied,
            clicked: -other.clicked,
        });
        self
    }

    /// The counters of a campaign as it is shown.
    pub fn of(c: &Campaign) -> Counters {
        let n = |v: u64| v as i64;
        Counters {
            sent: n(c.sent_count),
            delivered: n(c.delivered_count),
            read: n(c.read_count),
            failed: n(c.failed_count),
            processed: n(c.processed_count),
            sending: n(c.sending_count),
            billable: PricingCategory::ALL.map(|k| n(c.billable.get(k))),
            replied: n(c.replied_count),
            clicked: n(c.clicked_count),
        }
    }
}

impl Campaign {
    /// Adds counter changes to what the campaign shows (never below zero).
    pub fn count(&mut self, d: Counters) {
        let add = |v: &mut u64, d: i64| *v = (*v as i64).saturating_add(d).max(0) as u64;
        add(&mut self.sent_count, d.sent);
        add(&mut self.delivered_count, d.delivered);
        add(&mut self.read_count, d.read);
        add(&mut self.failed_count, d.failed);
        add(&mut self.processed_count, d.processed);
        add(&mut self.sending_count, d.sending);
        for k in PricingCategory::ALL {
            add(self.billable.get_mut(k), d.billable[k.index()]);
        }
        add(&mut self.replied_count, d.replied);
        add(&mut self.clicked_count, d.clicked);
    }

    /// Every recipient has an outcome of its send (accepted or rejected).
    pub fn all_processed(&self) -> bool {
        self.processed_count >= self.total_recipients
    }

    /// The recipient fields every imported row must carry for this campaign's messages.
    pub fn required_fields(&self) -> Vec<String> {
        required_fields(&self.variable_mapping)
    }
}

pub fn required_fields(mapping: &BTreeMap<String, String>) -> Vec<String> {
    let mut fields: Vec<String> =
        mapping.values().filter(|f| f.as_str() != super::recipient::PHONE_FIELD).cloned().collect();
    fields.sort();
    fields.dedup();
    fields
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub name: String,
    pub account_id: String,
    pub template_id: String,
    #[serde(default)]
    pub variable_mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub scheduled_at: Option<String>,
    #[serde(default)]
    pub header_media: Option<HeaderMedia>,
    #[serde(default)]
    pub header_location: Option<HeaderLocation>,
    #[serde(default)]
    pub send_window: Option<SendWindow>,
}

/// `PUT` on a draft: only the fields present change; `"scheduled_at": null` clears the time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignChanges {
    pub name: Option<String>,
    pub account_id: Option<String>,
    pub template_id: Option<String>,
    pub variable_mapping: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    pub scheduled_at: Option<Option<String>>,
    /// `null` removes it (for a template without a media header).
    #[serde(default, deserialize_with = "present")]
    pub header_media: Option<Option<HeaderMedia>>,
    /// `null` removes it (for a template without a LOCATION header).
    #[serde(default, deserialize_with = "present")]
    pub header_location: Option<Option<HeaderLocation>>,
    /// `null` removes it: recipients are sent at any time.
    #[serde(default, deserialize_with = "present")]
    pub send_window: Option<Option<SendWindow>>,
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Everything a campaign's account and template must agree with ([`check_references`]), and its
/// header values against the template's header ([`header::check_against_template`]). Checked on
/// create, on update and again at every start.
pub fn check_campaign(c: &Campaign, account: Option<&Account>, template: Option<&Template>) -> Result<(), Invalid> {
    check_references(&c.account_id, account, &c.template_id, template, &c.variable_mapping)?;
    match template {
        Some(t) => {
            header::check_against_template(t, &c.variable_mapping, c.header_media.as_ref(), c.header_location.as_ref())
        }
        None => Ok(()),
    }
}

/// The account and template a campaign points at must exist, belong together, be approved,
/// and the mapping must give every placeholder of the template a recipient field.
pub fn check_references(
    account_id: &str,
    account: Option<&Account>,
    template_id: &str,
    template: Option<&Template>,
    mapping: &BTreeMap<String, String>,
) -> Result<(), Invalid> {
    if account.is_none() {
        return Err(Invalid(format!("account_id: no account with id {account_id}")));
    }
    let Some(template) = template else {
        return Err(Invalid(format!("template_id: no template with id {template_id}")));
    };
    if template.account_id != account_id {
        return Err(Invalid(format!(
            "template_id: template {template_id} belongs to another account, not {account_id}"
        )));
    }
    if template.status != TemplateStatus::Approved {
        let status = serde_json::to_value(template.status).unwrap_or_default();
        return Err(Invalid(format!(
            "template_id: template {} is {}, only APPROVED templates can be sent",
            template.name,
            status.as_str().unwrap_or("not approved")
        )));
    }
    check_mapping(template, mapping)
}

fn check_mapping(template: &Template, mapping: &BTreeMap<String, String>) -> Result<(), Invalid> {
    // A media header's per-recipient link (see [`header`]) is mapped beside the placeholders.
    let media_key = template.header_format().is_some_and(HeaderFormat::is_media).then_some(MEDIA_KEY);
    let missing: Vec<&str> =
        template.parameters.iter().map(|p| p.key.as_str()).filter(|k| !mapping.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Err(Invalid(format!(
            "variable_mapping must map every placeholder of template {}; missing: {}",
            template.name,
            missing.join(", ")
        )));
    }
    let extra: Vec<&str> = mapping
        .keys()
        .map(String::as_str)
        .filter(|k| Some(*k) != media_key && !template.parameters.iter().any(|p| p.key == *k))
        .collect();
    if !extra.is_empty() {
        return Err(Invalid(format!(
            "variable_mapping has keys that are not placeholders of template {}: {}",
            template.name,
            extra.join(", ")
        )));
    }
    Ok(())
}

/// The mapping's own rules, before it is compared with a template: its size, its keys' length,
/// and values that name a recipient field.
fn check_mapping_shape(mapping: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if mapping.len() > TEMPLATE_PARAMETERS {
        return Err(Invalid(format!(
            "variable_mapping has {} entries; the limit is {TEMPLATE_PARAMETERS} (a template's placeholders)",
            mapping.len()
        )));
    }
    for (k, field) in mapping {
        if k.chars().count() > MAPPING_KEY_CHARS {
            return Err(Invalid(format!("variable_mapping keys must be at most {MAPPING_KEY_CHARS} characters")));
        }
        let f = field.trim();
        if f.is_empty() || f.chars().count() > FIELD_NAME_CHARS || f != field {
            return Err(Invalid(format!(
                "variable_mapping.{k} must name a recipient field (1 to {FIELD_NAME_CHARS} characters, no surrounding spaces)"
            )));
        }
    }
    Ok(())
}

impl NewCampaign {
    /// Builds the draft; the caller then checks its references with [`check_campaign`] and
    /// sets `template_name`.
    pub fn into_campaign(self, id: Id, now: &Timestamp) -> Result<Campaign, Invalid> {
        check_mapping_shape(&self.variable_mapping)?;
        self.header_media.as_ref().map(HeaderMedia::check).transpose()?;
        self.header_location.as_ref().map(HeaderLocation::check).transpose()?;
        Ok(Campaign {
            id,
            name: required_text("name", &self.name, CAMPAIGN_NAME_CHARS)?,
            account_id: Id::reference("account_id", &self.account_id)?,
            template_id: Id::reference("template_id", &self.template_id)?,
            template_name: String::new(),
            status: CampaignStatus::Draft,
            total_recipients: 0,
            sent_count: 0,
            processed_count: 0,
            sending_count: 0,
            billable: Billable::default(),
            replied_count: 0,
            clicked_count: 0,
            delivered_count: 0,
            read_count: 0,
            failed_count: 0,
            variable_mapping: self.variable_mapping,
            header_media: self.header_media,
            header_location: self.header_location,
            send_window: self.send_window,
            scheduled_at: self.scheduled_at.as_deref().map(|t| parse_time("scheduled_at", t)).transpose()?,
            started_at: None,
            completed_at: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            pause_reason: None,
            schedule_error: None,
            dispatch_run: None,
            recipient_shards: super::recipient::RECIPIENT_SHARDS,
            deleting: None,
            measured_rate: None,
            measured_at: None,
            limit_until: None,
            window_wait_until: None,
        })
    }
}

impl CampaignChanges {
    /// True when the change needs the account and template to be checked again.
    pub fn touches_references(&self) -> bool {
        self.account_id.is_some()
            || self.template_id.is_some()
            || self.variable_mapping.is_some()
            || self.header_media.is_some()
            || self.header_location.is_some()
    }

    /// Applies the changes to a copy of the campaign; the caller checks references afterwards
    /// (with [`check_campaign`]) when [`Self::touches_references`] says so.
    pub fn apply(self, campaign: &mut Campaign, now: &Timestamp) -> Result<(), Invalid> {
        if let Some(v) = self.name {
            campaign.name = required_text("name", &v, CAMPAIGN_NAME_CHARS)?;
        }
        if let Some(v) = self.account_id {
            campaign.account_id = Id::reference("account_id", &v)?;
        }
        if let Some(v) = self.template_id {
            campaign.template_id = Id::reference("template_id", &v)?;
        }
        if let Some(v) = self.variable_mapping {
            check_mapping_shape(&v)?;
            campaign.variable_mapping = v;
        }
        if let Some(v) = self.scheduled_at {
            campaign.scheduled_at = v.as_deref().map(|t| parse_time("scheduled_at", t)).transpose()?;
        }
        if let Some(v) = self.header_media {
            v.as_ref().map(HeaderMedia::check).transpose()?;
            campaign.header_media = v;
        }
        if let Some(v) = self.header_location {
            v.as_ref().map(HeaderLocation::check).transpose()?;
            campaign.header_location = v;
        }
        if let Some(v) = self.send_window {
            campaign.send_window = v;
        }
        campaign.updated_at = now.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::Tier;
    use crate::domain::template::{NewTemplate, ParameterFormat};
    use serde_json::json;

    fn template(status: &str) -> Template {
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": ACCOUNT, "name": "offer", "language": "en_US", "category": "MARKETING",
            "status": status, "components": [
                {"type":"HEADER","format":"TEXT","text":"Hi {{1}}"},
                {"type":"BODY","text":"Dear {{1}}, code {{2}}"}]
        }))
        .unwrap();
        t.validate("t1".into(), &"now".into()).unwrap()
    }

    fn account() -> Account {
        Account {
            id: ACCOUNT.into(),
            name: "n".into(),
            phone_number_id: "1".into(),
            business_account_id: "2".into(),
            messaging_limit_tier: Tier::Tier1K,
            throughput_mps: 80,
            opt_out_keywords: vec!["STOP".into()],
            opt_in_keywords: vec!["START".into()],
            prices: Default::default(),
            default_timezone: None,
            created_at: "t".into(),
            updated_at: "t".into(),
        }
    }

    fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn mapping_must_cover_every_placeholder_and_nothing_else() {
        let t = template("APPROVED");
        let a = account();
        let full = mapping(&[("header.1", "name"), ("1", "name"), ("2", "code")]);
        assert!(check_references(ACCOUNT, Some(&a), "t1", Some(&t), &full).is_ok());
        let short = mapping(&[("1", "name"), ("2", "code")]);
        let e = check_references(ACCOUNT, Some(&a), "t1", Some(&t), &short).unwrap_err();
        assert!(e.0.contains("missing: header.1"), "{}", e.0);
        let extra = mapping(&[("header.1", "name"), ("1", "name"), ("2", "code"), ("3", "x")]);
        let e = check_references(ACCOUNT, Some(&a), "t1", Some(&t), &extra).unwrap_err();
        assert!(e.0.contains(": 3"), "{}", e.0);
        assert_eq!(required_fields(&full), ["code", "name"]);
    }

    #[test]
    fn references_must_exist_match_and_be_approved() {
        let t = template("APPROVED");
        let m = mapping(&[("header.1", "n"), ("1", "n"), ("2", "c")]);
        let e = check_references(ACCOUNT, None, "t1", Some(&t), &m).unwrap_err();
        assert!(e.0.starts_with("account_id"));
        let e = check_references(ACCOUNT, Some(&account()), "t1", None, &m).unwrap_err();
        assert!(e.0.starts_with("template_id"));
        let e = check_references("a2", Some(&account()), "t1", Some(&t), &m).unwrap_err();
        assert!(e.0.contains("another account"));
        let e = check_references(ACCOUNT, Some(&account()), "t1", Some(&template("PENDING")), &m).unwrap_err();
        assert!(e.0.contains("PENDING"), "{}", e.0);
        let _ = ParameterFormat::Positional;
    }

    #[test]
    fn the_state_machine() {
        use CampaignStatus::*;
        let allowed = |a: Action| CampaignStatus::ALL.into_iter().filter(|s| a.allowed(*s)).collect::<Vec<_>>();
        assert_eq!(allowed(Action::Start), [Draft, Paused]);
        assert_eq!(allowed(Action::StartScheduled), [Scheduled]);
        assert_eq!(allowed(Action::Schedule), [Draft]);
        assert_eq!(allowed(Action::Unschedule), [Scheduled]);
        assert_eq!(
            (Action::Schedule.to(), Action::StartScheduled.to(), Action::Unschedule.to()),
            (Scheduled, Sending, Draft)
        );
        assert!(Action::StartScheduled.pins_scheduled_at() && !Action::Start.pins_scheduled_at());
        assert!(Action::Start.sends() && Action::StartScheduled.sends() && !Action::Schedule.sends());
        let editable: Vec<_> = CampaignStatus::ALL.into_iter().filter(|s| s.editable()).collect();
        assert_eq!(editable, [Draft, Scheduled]);
        assert_eq!(allowed(Action::Pause), [Sending]);
        assert_eq!(allowed(Action::Cancel), [Draft, Scheduled, Sending, Paused]);
        assert_eq!(allowed(Action::Complete), [Sending]);
        assert_eq!((Action::Start.to(), Action::Cancel.to()), (Sending, Cancelled));
        assert_eq!((allowed(Action::Retry), Action::Retry.to()), (vec![Sending, Completed], Sending));
        assert_eq!((allowed(Action::Suspend), Action::Suspend.to()), (vec![Scheduled, Sending], Paused));
        assert!(!Action::Start.allowed(Cancelled), "a cancelled campaign never resumes");
    }

    #[test]
    fn progress_counts_measures_and_estimates_at_the_pace() {
        let new: NewCampaign =
            serde_json::from_value(json!({"name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE})).unwrap();
        let mut c = new.into_campaign("c1".into(), &"now".into()).unwrap();
        let p = c.progress(Some(10), 1000);
        assert_eq!((p.percent, p.rate_per_second, p.eta_seconds), (0.0, 0.0, Some(0)));
        (c.total_recipients, c.processed_count, c.sent_count, c.failed_count) = (300, 101, 100, 3);
        (c.delivered_count, c.read_count, c.sending_count) = (60, 20, 5);
        (c.status, c.measured_rate, c.measured_at) = (CampaignStatus::Sending, Some(9.96), Some(990));
        let p = c.progress(Some(10), 1000);
        // 199 left at 10 a second; one of the three failures came by webhook after a send.
        assert_eq!((p.percent, p.rate_per_second, p.eta_seconds), (33.7, 10.0, Some(20)));
        let counts: Vec<u64> =
            ["pending", "sending", "sent", "delivered", "read", "failed"].iter().map(|s| p.counts[s]).collect();
        assert_eq!(counts, [199, 5, 38, 40, 20, 3]);
        assert_eq!(c.progress(Some(10), 990 + RATE_MAX_AGE_SECONDS + 1).rate_per_second, 0.0, "an old rate");
        assert_eq!(c.progress(None, 1000).eta_seconds, None, "no account, no pace");
        c.status = CampaignStatus::Paused;
        assert_eq!(
            (c.progress(Some(10), 1000).rate_per_second, c.progress(Some(10), 1000).eta_seconds),
            (0.0, Some(20))
        );
        c.status = CampaignStatus::Completed;
        assert_eq!(c.progress(Some(10), 1000).eta_seconds, Some(0));
        // At 200 a second messages go 5,075 µs apart (the spacing that keeps every second at
        // rate + 1): 2,000 left take 10.15 s, not 10.
        (c.status, c.total_recipients, c.processed_count) = (CampaignStatus::Sending, 2_101, 101);
        assert_eq!(c.progress(Some(200), 1000).eta_seconds, Some(11));
        c.status = CampaignStatus::Cancelled;
        assert_eq!(c.progress(Some(10), 1000).eta_seconds, None);
    }

    #[test]
    fn scheduled_at_is_stored_in_utc_and_can_be_cleared() {
        let new: NewCampaign = serde_json::from_value(json!({
            "name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE,
            "scheduled_at": "2027-01-01T00:00:00-05:00"
        }))
        .unwrap();
        let mut c = new.into_campaign("c1".into(), &"now".into()).unwrap();
        assert_eq!(c.scheduled_at.as_deref(), Some("2027-01-01T05:00:00Z"));
        assert_eq!((c.status, c.total_recipients), (CampaignStatus::Draft, 0));
        let clear: CampaignChanges = serde_json::from_value(json!({"scheduled_at": null})).unwrap();
        clear.apply(&mut c, &"later".into()).unwrap();
        assert_eq!(c.scheduled_at, None);
        let keep: CampaignChanges = serde_json::from_value(json!({"name": "New"})).unwrap();
        assert!(!keep.touches_references());
        assert!(serde_json::from_value::<CampaignChanges>(json!({"status": "sending"})).is_err());
    }

    #[test]
    fn header_values_are_checked_with_the_template_and_can_be_cleared() {
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": ACCOUNT, "name": "promo", "language": "en", "category": "MARKETING", "status": "APPROVED",
            "components": [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi {{1}}"}]
        }))
        .unwrap();
        let t = t.validate(TEMPLATE.into(), &"now".into()).unwrap();
        let new = |v: serde_json::Value| {
            let mut base = json!({"name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE});
            base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
            serde_json::from_value::<NewCampaign>(base).unwrap().into_campaign("c".into(), &"t".into())
        };
        let a = account();
        let mut c = new(json!({"variable_mapping": {"1": "name"}})).unwrap();
        let e = check_campaign(&c, Some(&a), Some(&t)).unwrap_err().0;
        assert!(e.starts_with("header_media is required: template promo has an IMAGE header"), "{e}");
        // header.media is a mapping key only for a media header, and a per-recipient link needs no header_media.
        let mapped = new(json!({"variable_mapping": {"1": "name", "header.media": "photo"}})).unwrap();
        assert!(check_campaign(&mapped, Some(&a), Some(&t)).is_ok());
        assert_eq!(mapped.required_fields(), ["name", "photo"]);
        let link = json!({"header_media": {"type": "image", "link": "https://x.example/a.png"}});
        let changes: CampaignChanges = serde_json::from_value(link.clone()).unwrap();
        assert!(changes.touches_references());
        changes.apply(&mut c, &"t".into()).unwrap();
        assert!(check_campaign(&c, Some(&a), Some(&t)).is_ok());
        let clear: CampaignChanges = serde_json::from_value(json!({"header_media": null})).unwrap();
        clear.apply(&mut c, &"t".into()).unwrap();
        assert_eq!(c.header_media, None);
        let bad = new(json!({"header_media": {"type": "image", "link": "http://x.example/a.png"}})).unwrap_err();
        assert!(bad.0.starts_with("header_media.link must be an https URL"), "{}", bad.0);
        let far = new(json!({"header_location": {"latitude": 91, "longitude": 0}})).unwrap_err();
        assert!(far.0.contains("latitude"), "{}", far.0);
    }

    #[test]
    fn a_send_window_is_kept_changed_and_cleared() {
        let window = json!({"start": "22:00", "end": "06:00", "days": ["sat", "fri"], "timezone": "recipient"});
        let new: NewCampaign = serde_json::from_value(
            json!({"name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE, "send_window": window}),
        )
        .unwrap();
        let mut c = new.into_campaign("c1".into(), &"now".into()).unwrap();
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["send_window"]["days"], json!(["fri", "sat"]));
        assert_eq!(serde_json::from_value::<Campaign>(shown).unwrap().send_window, c.send_window, "reads back");
        let change: CampaignChanges = serde_json::from_value(
            json!({"send_window": {"start": "09:00", "end": "17:00", "timezone": "Europe/Berlin"}}),
        )
        .unwrap();
        assert!(!change.touches_references());
        change.apply(&mut c, &"later".into()).unwrap();
        assert_eq!(c.send_window.as_ref().map(|w| w.days.len()), Some(7));
        let keep: CampaignChanges = serde_json::from_value(json!({"name": "Other"})).unwrap();
        keep.apply(&mut c, &"later".into()).unwrap();
        assert!(c.send_window.is_some(), "left out: unchanged");
        let clear: CampaignChanges = serde_json::from_value(json!({"send_window": null})).unwrap();
        clear.apply(&mut c, &"later".into()).unwrap();
        assert_eq!(c.send_window, None);
        assert!(serde_json::to_value(&c).unwrap().get("send_window").is_none(), "absent when none");
    }

    const ACCOUNT: &str = "0b6f4c6e-0000-4000-8000-000000000001";
    const TEMPLATE: &str = "0b6f4c6e-0000-4000-8000-000000000002";

    #[test]
    fn references_are_ids_and_the_mapping_is_bounded() {
        let new = |v: serde_json::Value| {
            serde_json::from_value::<NewCampaign>(v).unwrap().into_campaign("c".into(), &"t".into())
        };
        let base = json!({"name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE});
        assert!(new(base.clone()).is_ok());
        let mut bad = base.clone();
        bad["account_id"] = json!("not-a-uuid");
        assert!(new(bad).unwrap_err().0.starts_with("account_id must be the id (a UUID) of an existing account"));
        let mut bad = base.clone();
        bad["template_id"] = json!("x".repeat(10_000));
        let e = new(bad).unwrap_err().0;
        assert!(e.starts_with("template_id must be the id (a UUID) of an existing template") && e.len() < 100, "{e}");
        let mut big = base.clone();
        big["variable_mapping"] = (0..=TEMPLATE_PARAMETERS).map(|i| (i.to_string(), json!("name"))).collect();
        assert!(new(big).unwrap_err().0.contains("the limit is 100"));
        let mut long_key = base.clone();
        long_key["variable_mapping"] = json!({"k".repeat(MAPPING_KEY_CHARS + 1): "name"});
        assert!(new(long_key).unwrap_err().0.contains("at most 80 characters"));
        let mut field = base;
        field["variable_mapping"] = json!({"1": " name"});
        assert!(new(field).unwrap_err().0.contains("variable_mapping.1 must name a recipient field"));
        let changes: CampaignChanges = serde_json::from_value(json!({"template_id": "t2"})).unwrap();
        let mut c = new(json!({"name": "Sale", "account_id": ACCOUNT, "template_id": TEMPLATE})).unwrap();
        assert!(changes.apply(&mut c, &"t".into()).unwrap_err().0.starts_with("template_id must be"));
    }
}
