//! Applies a webhook notification: delivery statuses to the recipients their wamids belong
//! to (and the campaign counters they move), opt-outs to the account's list.
//!
//! Reads and writes are batched: the recipients are found through the key the sender put in
//! `biz_opaque_callback_data` (a wamid lookup on the index is the fallback), read with
//! BatchGetItem, and changed up to 99 at a time in one transaction that also moves the
//! campaign's counters. Applying a notification twice changes nothing the second time.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::api::App;
use crate::domain::delivery::{Delivery, Notification, Progress, StatusUpdate, callback_key};
use crate::domain::now;
use crate::domain::recipient::{Recipient, RecipientStatus};
use crate::domain::sending::{backoff, random_unit};
use crate::store::{DeliveryChange, RECIPIENTS_PER_TRANSACTION, StoreError};

/// The code of a failure that means the person opted out of marketing messages.
pub const OPTED_OUT_CODE: i64 = 131050;

/// How many times a transaction is tried again after a concurrent change of its recipients.
const ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A status arrived for a message whose send is still being recorded; Meta will deliver
    /// the notification again.
    #[error("a status arrived before its send was recorded")]
    NotRecordedYet,
}

/// What a notification changed, returned to the caller (and logged).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Applied {
    pub statuses: usize,
    /// Recipients whose status or timestamps changed.
    pub recipients_changed: usize,
    /// Statuses whose wamid belongs to no recipient of this service.
    pub unknown: usize,
    /// Entries without anything to apply (inbound messages, other fields, `played`).
    pub ignored: usize,
    pub opt_outs: usize,
}

type Key = (String, String);

pub async fn apply(app: &App, n: Notification) -> Result<Applied, DeliveryError> {
    let mut applied = Applied { statuses: n.statuses.len(), ignored: n.ignored, ..Default::default() };
    let (by_recipient, mut read, unknown) = resolve(app, &n.statuses).await?;
    applied.unknown = unknown;
    let mut by_campaign: BTreeMap<&str, Vec<(&Key, &Vec<&StatusUpdate>)>> = BTreeMap::new();
    for (key, updates) in &by_recipient {
        by_campaign.entry(key.0.as_str()).or_default().push((key, updates));
    }
    for (campaign_id, recipients) in by_campaign {
        for chunk in recipients.chunks(RECIPIENTS_PER_TRANSACTION) {
            applied.recipients_changed += apply_chunk(app, campaign_id, chunk, &mut read).await?;
        }
    }
    applied.opt_outs += record_failure_opt_outs(app, &by_recipient).await?;
    // The account of each business number, looked up once per notification.
    let mut accounts: HashMap<&str, Option<String>> = HashMap::new();
    for p in &n.preferences {
        if !accounts.contains_key(p.phone_number_id.as_str()) {
            let account = app.db.account_by_phone_number_id(&p.phone_number_id).await?.map(|a| a.id);
            accounts.insert(&p.phone_number_id, account);
        }
        let Some(Some(account_id)) = accounts.get(p.phone_number_id.as_str()) else {
            tracing::warn!(phone_number_id = %p.phone_number_id, "user preference for a number of no account");
            continue;
        };
        let reason = "the person stopped marketing messages (user_preferences webhook)";
        app.db.set_opt_out(account_id, &p.phone, p.stop, reason, &now()).await?;
        applied.opt_outs += p.stop as usize;
    }
    Ok(applied)
}

/// Groups the statuses by the recipient they belong to, with the recipients as read; counts
/// the statuses of unknown wamids.
async fn resolve<'a>(
    app: &App,
    statuses: &'a [StatusUpdate],
) -> Result<(HashMap<Key, Vec<&'a StatusUpdate>>, HashMap<Key, Recipient>, usize), DeliveryError> {
    let mut keyed: Vec<(Key, &StatusUpdate)> = Vec::new();
    let mut lookup: Vec<&StatusUpdate> = Vec::new();
    for s in statuses {
        match s.callback.as_deref().and_then(callback_key) {
            Some((c, p)) => keyed.push(((c.to_string(), p.to_string()), s)),
            None => lookup.push(s),
        }
    }
    if !lookup.is_empty() {
        let wamids: Vec<String> = lookup.iter().map(|s| s.wamid.clone()).collect::<HashSet<_>>().into_iter().collect();
        let by_wamid: HashMap<String, Key> = app.db.recipients_by_wamid(&wamids).await?.into_iter().collect();
        for s in lookup {
            if let Some(k) = by_wamid.get(&s.wamid) {
                keyed.push((k.clone(), s));
            }
        }
    }
    let keys: Vec<Key> = keyed.iter().map(|(k, _)| k.clone()).collect::<HashSet<_>>().into_iter().collect();
    let recipients: HashMap<Key, Recipient> =
        app.db.recipients_at(&keys).await?.into_iter().map(|r| (key(&r), r)).collect();
    let mut grouped: HashMap<Key, Vec<&StatusUpdate>> = HashMap::new();
    let mut unknown = statuses.len() - keyed.len();
    for (k, s) in keyed {
        match recipients.get(&k) {
            Some(r) if r.wamid.as_deref() == Some(s.wamid.as_str()) => grouped.entry(k).or_default().push(s),
            // Our key, but the send is not recorded yet: answer so that Meta retries.
            Some(r) if r.status == RecipientStatus::Sending => return Err(DeliveryError::NotRecordedYet),
            _ => unknown += 1,
        }
    }
    Ok((grouped, recipients, unknown))
}

fn key(r: &Recipient) -> Key {
    (r.campaign_id.clone(), r.phone_number.clone())
}

/// Applies the statuses of up to 99 recipients of one campaign in one transaction; reads
/// them again and retries when another webhook changed one of them meanwhile. Returns how
/// many recipients changed.
async fn apply_chunk(
    app: &App,
    campaign_id: &str,
    chunk: &[(&Key, &Vec<&StatusUpdate>)],
    read: &mut HashMap<Key, Recipient>,
) -> Result<usize, DeliveryError> {
    let keys: Vec<Key> = chunk.iter().map(|(k, _)| (*k).clone()).collect();
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            read.extend(app.db.recipients_at(&keys).await?.into_iter().map(|r| (key(&r), r)));
        }
        let mut changes = Vec::new();
        for (k, updates) in chunk {
            let Some(before) = read.get(*k) else { continue };
            let mut after = Progress::of(before);
            updates.iter().for_each(|u| after.apply(u));
            if after != Progress::of(before) {
                changes.push(DeliveryChange { before, after });
            }
        }
        match app.db.record_deliveries(campaign_id, &changes).await {
            Ok(()) => return Ok(changes.len()),
            Err(StoreError::ConditionFailed) | Err(StoreError::Conflict) if attempt + 1 < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt, random_unit())).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A failure with code 131050 means the person opted out of marketing messages: remember it
/// for the campaign's account.
async fn record_failure_opt_outs(
    app: &App,
    statuses: &HashMap<Key, Vec<&StatusUpdate>>,
) -> Result<usize, DeliveryError> {
    let opted: Vec<&Key> = statuses
        .iter()
        .filter(|(_, us)| {
            us.iter()
                .any(|u| u.status == Delivery::Failed && u.error.as_ref().and_then(|e| e.0) == Some(OPTED_OUT_CODE))
        })
        .map(|(k, _)| k)
        .collect();
    let mut accounts: HashMap<&str, Option<String>> = HashMap::new();
    for (campaign_id, phone) in &opted {
        if !accounts.contains_key(campaign_id.as_str()) {
            let account = app.db.get_campaign(campaign_id).await?.map(|c| c.account_id);
            accounts.insert(campaign_id, account);
        }
        if let Some(Some(account)) = accounts.get(campaign_id.as_str()) {
            let reason = "a message failed with 131050 (the person stopped marketing messages)";
            app.db.set_opt_out(account, phone, true, reason, &now()).await?;
        }
    }
    Ok(opted.len())
}
