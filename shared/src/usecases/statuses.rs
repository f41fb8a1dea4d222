//! Delivery statuses at Meta's rate. The webhook checks the signature and puts what Meta sent
//! on the status queue (so its answer never waits for the store, and a slow or failing store
//! loses nothing); the status applier takes the queue in batches and applies them:
//!
//! - recipients are found by the key the sender put in `biz_opaque_callback_data` (read with
//!   BatchGetItem), or by message id on the index for a status without it;
//! - each recipient's statuses are folded by the rules of `domain::delivery` and written with a
//!   single-item condition on what was read (its `delivery_version` and message id), 25 to a
//!   request without a transaction (one write unit each), with a new `tally` mark: the consumer
//!   of the table's stream ([`crate::usecases::tally`]) counts each change once, so a batch
//!   applied twice (a redelivery, a crash half-way) counts once, and no item takes more than a
//!   few counter writes a second; a write whose condition fails (a concurrent webhook) is read
//!   again and retried;
//! - a status for a recipient whose send is still being recorded goes back on the queue for a
//!   few seconds; one for a message not known (yet) is tried again for a day, then dropped;
//! - opt-outs (a 131050 failure, a `user_preferences` stop, an inbound text that is one of the
//!   account's opt-out keywords) are remembered for the account, and an opt-in keyword removes
//!   one;
//! - Meta's news of templates is applied by [`template_health`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::adapters::store::{DeliveryChange, RECIPIENTS_PER_TRANSACTION, StoreError, wait_before_retry};
use crate::app::App;
use crate::domain::account::Account;
use crate::domain::delivery::{Delivery, Inbound, Notification, Progress, StatusUpdate, TemplateNews, callback_key};
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::opt_out;
use crate::domain::recipient::{Recipient, RecipientKey, RecipientStatus};
use crate::usecases::send::Incoming;
use crate::usecases::{engagement, template_health};

/// Statuses per status-queue message (a POST of Meta's 1,000 makes ten messages of about
/// 30 KB).
pub const STATUSES_PER_MESSAGE: usize = 100;

/// How long statuses of messages not known are tried again (seconds from their arrival).
const KEEP_UNKNOWN_FOR: i64 = 24 * 3600;

/// How many times a transaction is tried again after a concurrent change of its recipients.
const ATTEMPTS: u32 = 8;

/// What a batch of notifications changed (logged, and returned to the tests).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Applied {
    pub statuses: usize,
    /// Recipients whose status or timestamps changed.
    pub recipients_changed: usize,
    /// Statuses of messages no recipient is known for (tried again later, for a day).
    pub unknown: usize,
    /// Statuses whose send is still being recorded (tried again in a few seconds).
    pub waiting: usize,
    /// Entries without anything to apply (inbound messages, other fields, `played`).
    pub ignored: usize,
    pub opt_outs: usize,
    /// Opt-outs removed by an opt-in keyword.
    pub opt_ins: usize,
    /// Recipients who answered their message, and who pressed its button, for the first time.
    pub replies: usize,
    pub clicks: usize,
    /// Campaigns paused because Meta paused, disabled or rejected their template.
    pub campaigns_paused: usize,
}

impl Applied {
    pub fn add(&mut self, other: &Applied) {
        self.statuses += other.statuses;
        self.recipients_changed += other.recipients_changed;
        self.unknown += other.unknown;
        self.waiting += other.waiting;
        self.ignored += other.ignored;
        self.opt_outs += other.opt_outs;
        self.opt_ins += other.opt_ins;
        self.replies += other.replies;
        self.clicks += other.clicks;
        self.campaigns_paused += other.campaigns_paused;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::adapters::queue::QueueError),
}

/// What the webhook queued for one POST.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Queued {
    pub statuses: usize,
    pub preferences: usize,
    pub templates: usize,
    /// Inbound texts queued (checked for opt-out keywords).
    pub messages: usize,
    pub ignored: usize,
}

/// The webhook's part: puts a verified notification on the status queue (in parts of at most
/// [`STATUSES_PER_MESSAGE`] statuses). Returns once it is queued, so that Meta gets its 200
/// only for what will be applied.
pub async fn queue(app: &App, mut n: Notification) -> Result<Queued, DeliveryError> {
    let queued = Queued {
        statuses: n.statuses.len(),
        preferences: n.preferences.len(),
        templates: n.templates.len(),
        messages: n.inbound.len(),
        ignored: n.ignored,
    };
    if n.is_empty() {
        return Ok(queued);
    }
    n.received_at = chrono::Utc::now().timestamp();
    app.queue.put_statuses(&n.split(STATUSES_PER_MESSAGE), Duration::ZERO).await?;
    Ok(queued)
}

/// One status and the queue message it came in.
struct Arrived<'a> {
    message: usize,
    status: &'a StatusUpdate,
}

/// The status applier: applies a batch of queued notifications. Returns what changed and the
/// ids of the messages to deliver again (the store failed, or what had to wait could not be
/// queued again).
pub async fn apply_batch(app: &App, messages: Vec<Incoming>) -> (Applied, Vec<String>) {
    let mut applied = Applied::default();
    let mut failed = Vec::new();
    let mut notes: Vec<(String, Notification)> = Vec::new();
    for m in messages {
        match serde_json::from_str::<Notification>(&m.body) {
            Ok(n) => notes.push((m.id, n)),
            Err(e) => {
                tracing::warn!(message = %m.id, error = %e, "not a queued notification");
                failed.push(m.id);
            }
        }
    }
    match apply(app, &notes).await {
        Ok((done, later)) => {
            applied.add(&done);
            if let Err(e) = requeue(app, &notes, later).await {
                tracing::warn!(error = %e, "statuses to try again could not be queued; the batch comes back");
                failed.extend(notes.iter().map(|(id, _)| id.clone()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "statuses could not be applied; the batch comes back");
            failed.extend(notes.iter().map(|(id, _)| id.clone()));
        }
    }
    if applied != Applied::default() {
        tracing::info!(?applied, "statuses applied");
    }
    (applied, failed)
}

/// Statuses to put back on the queue, by the message they came in: waiting for their send to
/// be recorded, or of a message not known.
#[derive(Default)]
struct Later {
    waiting: BTreeMap<usize, Vec<StatusUpdate>>,
    unknown: BTreeMap<usize, Vec<StatusUpdate>>,
}

async fn apply(app: &App, notes: &[(String, Notification)]) -> Result<(Applied, Later), DeliveryError> {
    let mut applied = Applied::default();
    let mut later = Later::default();
    let arrived: Vec<Arrived> = notes
        .iter()
        .enumerate()
        .flat_map(|(message, (_, n))| n.statuses.iter().map(move |status| Arrived { message, status }))
        .collect();
    applied.statuses = arrived.len();
    applied.ignored = notes.iter().map(|(_, n)| n.ignored).sum();
    let (keyed, mut read) = resolve(app, &arrived).await?;
    let mut by_recipient: HashMap<RecipientKey, Vec<&StatusUpdate>> = HashMap::new();
    for (key, a) in keyed {
        match key.as_ref().and_then(|k| read.get(k).map(|r| (k, r))) {
            Some((k, r)) if Progress::of(r).concerns(&a.status.wamid) => {
                by_recipient.entry(k.clone()).or_default().push(a.status);
            }
            // Its send is not recorded yet: in a moment it will be.
            Some((_, r)) if r.status == RecipientStatus::Sending => {
                later.waiting.entry(a.message).or_default().push(a.status.clone());
            }
            _ => later.unknown.entry(a.message).or_default().push(a.status.clone()),
        }
    }
    applied.waiting = later.waiting.values().map(Vec::len).sum();
    applied.unknown = later.unknown.values().map(Vec::len).sum();
    let mut by_campaign: BTreeMap<&str, Vec<(&RecipientKey, &Vec<&StatusUpdate>)>> = BTreeMap::new();
    for (key, updates) in &by_recipient {
        by_campaign.entry(key.campaign_id.as_str()).or_default().push((key, updates));
    }
    for (campaign_id, recipients) in by_campaign {
        for chunk in recipients.chunks(RECIPIENTS_PER_TRANSACTION) {
            applied.recipients_changed += apply_chunk(app, campaign_id, chunk, &mut read).await?;
        }
    }
    applied.opt_outs += record_failure_opt_outs(app, &by_recipient).await?;
    let news: Vec<&TemplateNews> = notes.iter().flat_map(|(_, n)| n.templates.iter()).collect();
    applied.campaigns_paused += template_health::apply(app, &news).await?;
    // The account of each business number, looked up once per batch.
    let mut accounts: HashMap<&str, Option<Account>> = HashMap::new();
    for p in notes.iter().flat_map(|(_, n)| &n.preferences) {
        let Some(account) = account_of(app, &mut accounts, &p.phone_number_id).await? else {
            tracing::warn!(phone_number_id = %p.phone_number_id, "user preference for a number of no account");
            continue;
        };
        let reason = "the person stopped marketing messages (user_preferences webhook)";
        app.db.set_opt_out(&account.id, &p.phone, p.stop, reason, &now()).await?;
        applied.opt_outs += p.stop as usize;
    }
    let inbound: Vec<&Inbound> = notes.iter().flat_map(|(_, n)| n.inbound.iter()).collect();
    let answered = engagement::apply(app, &inbound).await?;
    (applied.replies, applied.clicks) = (answered.replies, answered.clicks);
    // A text that is one of the account's opt-out (or opt-in) keywords.
    for m in notes.iter().flat_map(|(_, n)| &n.inbound) {
        let Some(account) = account_of(app, &mut accounts, &m.phone_number_id).await? else { continue };
        let Some(stop) = account.keyword(&m.text) else { continue };
        let reason = format!("the person sent \"{}\" (an opt-out keyword of the account)", m.text.trim());
        app.db.set_opt_out(&account.id, &m.from, stop, &reason, &now()).await?;
        applied.opt_outs += stop as usize;
        applied.opt_ins += !stop as usize;
    }
    Ok((applied, later))
}

/// The account of a business number, read once per batch.
async fn account_of<'n>(
    app: &App,
    accounts: &mut HashMap<&'n str, Option<Account>>,
    phone_number_id: &'n str,
) -> Result<Option<Account>, StoreError> {
    if !accounts.contains_key(phone_number_id) {
        accounts.insert(phone_number_id, app.db.account_by_phone_number_id(phone_number_id).await?);
    }
    Ok(accounts.get(phone_number_id).cloned().flatten())
}

/// Puts statuses back on the queue: those waiting for their send's record a few seconds
/// later (2, 4, 8… up to 60 s), those of messages not known later still (by default 1, 2, 4…
/// minutes, up to 15) until a day has passed since they arrived.
async fn requeue(app: &App, notes: &[(String, Notification)], later: Later) -> Result<(), DeliveryError> {
    let now = chrono::Utc::now().timestamp();
    for (kind, groups) in [("waiting", later.waiting), ("unknown", later.unknown)] {
        for (message, statuses) in groups {
            let origin = &notes[message].1;
            let attempt = origin.attempt + 1;
            let delay = if kind == "waiting" {
                Duration::from_secs((1u64 << attempt.min(6)).min(60))
            } else if now - origin.received_at < KEEP_UNKNOWN_FOR {
                let first = app.config.unknown_status_retry_seconds.max(1);
                Duration::from_secs((first << (attempt - 1).min(4)).min(900))
            } else {
                tracing::warn!(statuses = statuses.len(), "statuses of messages not known for a day are dropped");
                continue;
            };
            let again = Notification { statuses, received_at: origin.received_at, attempt, ..Default::default() };
            app.queue.put_statuses(&[again], delay).await?;
        }
    }
    Ok(())
}

/// The key of the recipient each status belongs to (`None`: none known), and the recipients
/// as read.
async fn resolve<'a>(
    app: &App,
    arrived: &'a [Arrived<'a>],
) -> Result<(Vec<(Option<RecipientKey>, &'a Arrived<'a>)>, HashMap<RecipientKey, Recipient>), DeliveryError> {
    let mut keyed: Vec<(Option<RecipientKey>, &Arrived)> = Vec::new();
    let mut lookup: Vec<&StatusUpdate> = Vec::new();
    for a in arrived {
        let key = a.status.callback.as_deref().and_then(callback_key);
        if key.is_none() {
            lookup.push(a.status);
        }
        keyed.push((key, a));
    }
    if !lookup.is_empty() {
        let wamids: Vec<String> = lookup.iter().map(|s| s.wamid.clone()).collect::<HashSet<_>>().into_iter().collect();
        let by_wamid: HashMap<String, RecipientKey> = app.db.recipients_by_wamid(&wamids).await?.into_iter().collect();
        for (key, a) in keyed.iter_mut().filter(|(k, _)| k.is_none()) {
            *key = by_wamid.get(&a.status.wamid).cloned();
        }
    }
    let keys: Vec<RecipientKey> =
        keyed.iter().filter_map(|(k, _)| k.clone()).collect::<HashSet<_>>().into_iter().collect();
    let recipients = app.db.recipients_at(&keys).await?.into_iter().map(|r| (RecipientKey::of(&r), r)).collect();
    Ok((keyed, recipients))
}

/// Applies the statuses of up to 99 recipients of one campaign, each written on condition it
/// is still as read; reads again those that something else changed meanwhile, and retries
/// them. Returns how many recipients changed.
async fn apply_chunk(
    app: &App,
    campaign_id: &str,
    chunk: &[(&RecipientKey, &Vec<&StatusUpdate>)],
    read: &mut HashMap<RecipientKey, Recipient>,
) -> Result<usize, DeliveryError> {
    let mut todo: Vec<&(&RecipientKey, &Vec<&StatusUpdate>)> = chunk.iter().collect();
    let mut changed = 0;
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            let keys: Vec<RecipientKey> = todo.iter().map(|(k, _)| (*k).clone()).collect();
            read.extend(app.db.recipients_at(&keys).await?.into_iter().map(|r| (RecipientKey::of(&r), r)));
        }
        let mut changes = Vec::new();
        let mut of_change = Vec::new();
        for entry in &todo {
            let (k, updates) = entry;
            let Some(before) = read.get(*k) else { continue };
            let mut after = Progress::of(before);
            for u in updates.iter() {
                if after.concerns(&u.wamid) {
                    after.apply(u);
                }
            }
            if after != Progress::of(before) {
                changes.push(DeliveryChange { before, after });
                of_change.push(*entry);
            }
        }
        let written = app.db.record_deliveries(campaign_id, &changes).await?;
        changed += written.iter().filter(|w| **w).count();
        todo = of_change.into_iter().zip(written).filter(|(_, w)| !w).map(|(e, _)| e).collect();
        if todo.is_empty() {
            return Ok(changed);
        }
        if attempt + 1 >= ATTEMPTS {
            return Err(StoreError::Conflict.into());
        }
        attempt += 1;
        wait_before_retry(attempt).await;
    }
}

/// Records that the number opted out of the account's marketing messages (a message to it
/// failed with [`opt_out::OPTED_OUT_CODE`]).
pub(crate) async fn remember_opt_out(app: &App, account_id: &str, phone: &str) -> Result<(), StoreError> {
    app.db.set_opt_out(account_id, phone, true, opt_out::FROM_FAILURE, &now()).await
}

/// A failure with code 131050 means the person opted out of marketing messages: remember it
/// for the campaign's account.
async fn record_failure_opt_outs(
    app: &App,
    statuses: &HashMap<RecipientKey, Vec<&StatusUpdate>>,
) -> Result<usize, DeliveryError> {
    let opted: Vec<&RecipientKey> = statuses
        .iter()
        .filter(|(_, us)| {
            us.iter().any(|u| u.status == Delivery::Failed && opt_out::is_opt_out(u.error.as_ref().and_then(|e| e.0)))
        })
        .map(|(k, _)| k)
        .collect();
    let mut accounts: HashMap<&str, Option<Id>> = HashMap::new();
    for RecipientKey { campaign_id, phone, .. } in &opted {
        if !accounts.contains_key(campaign_id.as_str()) {
            let account = app.db.get_campaign(campaign_id).await?.map(|c| c.account_id);
            accounts.insert(campaign_id, account);
        }
        if let Some(Some(account)) = accounts.get(campaign_id.as_str()) {
            remember_opt_out(app, account, phone).await?;
        }
    }
    Ok(opted.len())
}
