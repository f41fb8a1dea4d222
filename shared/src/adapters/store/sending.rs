//! The store operations of the sending side: campaign transitions, claims and outcomes of
//! recipients (a send job's claims and its outcomes one conditional write each, 25 to a
//! request, counted from the table's stream), paging pending
//! recipients, the account's pace, and what the reconciler reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use super::keys::*;
use super::partiql::new_tally;
use super::{
    BATCH_CONCURRENCY, Db, Index, Item, KeyQuery, RECIPIENTS_PER_TRANSACTION, StoreError, StoreResult, applied, decode,
    n, s, wait_before_retry,
};
use crate::domain::campaign::{Action, Campaign, CampaignStatus, Counters};
use crate::domain::phone::Phone;
use crate::domain::recipient::{Recipient, RecipientStatus, shard_of};

/// What a send job reads before it sends ([`Db::job_recipients`]).
#[derive(Debug, Default)]
pub struct JobRead {
    pub recipients: Vec<Recipient>,
    pub opted_out: HashSet<Phone>,
    /// The business's people reached per hour (empty when not read).
    pub reached: crate::domain::daily_cap::Reached,
    /// The hour each of the job's numbers was last counted in, for those the business reached.
    pub counted_in: HashMap<Phone, i64>,
}

/// An outcome to store for a recipient of a send job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// WhatsApp accepted the message.
    Sent { wamid: String },
    /// The message was refused or its outcome is unknown; never sent again automatically.
    Failed { code: Option<i64>, message: String },
    /// Not sent (campaign paused, a retry later): back to pending. With `retry_at` (unix
    /// seconds), a delayed retry job owns it until then.
    Released { retry_at: Option<i64> },
}

/// Whose the recipient is when its outcome is recorded: the write holds only if it still is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    /// Claimed by this send job.
    Job(&'a str),
    /// Not claimed: still pending (it fails without a request: opted out, a field missing).
    Unclaimed,
    /// A claim left by a sender that is gone: its job and when it claimed.
    Stale { job: &'a str, claimed_at: i64 },
}

/// One recipient's outcome to record.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub phone: &'a str,
    pub holder: Holder<'a>,
    pub outcome: Outcome,
}

/// Why a transaction did not go through.
enum TxFailure {
    /// The items (by position) whose condition failed; nothing was written.
    Conditions(Vec<usize>),
    /// Another transaction was changing the same items (or DynamoDB throttled it): try again.
    Busy,
    Other(StoreError),
}

/// Where the dispatch of a sharded campaign is: the shard to read first next time, the last
/// number read in each shard that may hold more, and the shards read to the end.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ShardCursor {
    #[serde(rename = "n")]
    next: u32,
    #[serde(rename = "a", default)]
    after: BTreeMap<u32, String>,
    #[serde(rename = "d", default)]
    done: Vec<u32>,
}

/// A dispatch step reads about this many pending numbers from each shard it reads (and as
/// many shards as that takes: 10 for the 2,000 a step queues at 1,000 msg/s). The writes of
/// what a step queues (a claim, an outcome and two statuses each) fall on those shards' keys
/// for the second or two it takes to send them: at 1,000 msg/s about 4,000 a second over 10
/// keys, under the 500 a second per key aimed at. Fewer, larger reads than one per 50 numbers
/// keep the step's requests few: each Query costs a round trip, whatever it reads.
const PENDING_PER_SHARD_READ: usize = 200;

/// Attempts of a transaction that keeps meeting concurrent ones, before the caller gets the
/// error.
const TX_ATTEMPTS: u32 = 8;

/// What a reservation of send slots got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The slots, `interval` apart, start at this time (unix microseconds).
    Granted(i64),
    /// The account's slots are taken further ahead than the horizon: try again at this time
    /// (unix microseconds) at the earliest.
    Busy { retry_at: i64 },
}

/// How far ahead of the reservation the first slot is at least (covers the store's answer),
/// and at most (when the store answers slowly: twice its recent answer time).
pub const SLOT_LEAD_US: i64 = 150_000;
const MAX_SLOT_LEAD_US: i64 = 1_000_000;

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Dynamo(e.to_string())
}

fn tx_failure<R: std::fmt::Debug>(e: SdkError<TransactWriteItemsError, R>) -> TxFailure {
    if let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error() {
        let codes: Vec<&str> = c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
        tracing::debug!(?codes, message = ?c.message(), "transaction cancelled");
        let failed: Vec<usize> =
            codes.iter().enumerate().filter(|(_, c)| **c == "ConditionalCheckFailed").map(|(i, _)| i).collect();
        if !failed.is_empty() {
            return TxFailure::Conditions(failed);
        }
        if codes
            .iter()
            .any(|c| matches!(*c, "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"))
        {
            return TxFailure::Busy;
        }
    }
    tracing::debug!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "transaction failed");
    match StoreError::from(e) {
        StoreError::Conflict => TxFailure::Busy,
        other => TxFailure::Other(other),
    }
}

impl Db {
    /// Moves a campaign through the state machine with a conditional write: only from the
    /// action's allowed statuses, never while it is being deleted, for a start never while an
    /// import runs, and for an action tied to the schedule only while `scheduled_at` is still
    /// the one read in `c`. `started_at` is set on the first start only; `completed_at` once,
    /// since `completed` is final. `reason` is kept as `pause_reason` on a pause and as
    /// `schedule_error` when a scheduled start sends the campaign back to draft.
    pub async fn transition(
        &self,
        c: &Campaign,
        action: Action,
        now: &str,
        reason: Option<&str>,
    ) -> StoreResult<Campaign> {
        let to = action.to();
        let created = created_sk(&c.created_at, &c.id);
        let mut set = vec!["#status = :to", "GSI2SK = :gsi2sk", "GSI3PK = :gsi3pk", "updated_at = :now"];
        let mut remove = vec![];
        match action {
            Action::Start | Action::StartScheduled => {
                // Unset timestamps are stored as NULL, so `if_not_exists` cannot tell; the
                // status condition below makes the campaign read here the current one.
                if c.started_at.is_none() {
                    set.push("started_at = :now");
                }
                // A new dispatch run: steps and jobs of an earlier one stop.
                set.push("dispatch_run = :run");
                remove.push("pause_reason");
            }
            Action::Retry => {
                set.push("dispatch_run = :run");
                remove.extend(["pause_reason", "completed_at"]);
            }
            Action::Complete => set.push("completed_at = :now"),
            Action::Pause | Action::Suspend if reason.is_some() => set.push("pause_reason = :reason"),
            Action::Unschedule if reason.is_some() => set.push("schedule_error = :reason"),
            _ => remove.push("pause_reason"),
        }
        if !set.contains(&"schedule_error = :reason") {
            remove.push("schedule_error");
        }
        let from: Vec<String> = (0..action.from().len()).map(|i| format!(":from{i}")).collect();
        let mut condition =
            format!("attribute_exists(PK) AND attribute_not_exists(deleting) AND #status IN ({})", from.join(", "));
        if action.sends() {
            condition.push_str(" AND (attribute_not_exists(import_lock_until) OR import_lock_until < :unix)");
        }
        if action.pins_scheduled_at() {
            condition.push_str(" AND scheduled_at = :scheduled_at");
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut req = self
            .update(campaign_pk(&c.id), CAMPAIGN_SK)
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":gsi2sk", s(format!("{}#{created}", to.as_str())))
            .expression_attribute_values(":gsi3pk", s(campaigns_in_status(to.as_str())))
            .expression_attribute_values(":now", s(now))
            .return_values(ReturnValue::AllNew);
        for (i, st) in action.from().iter().enumerate() {
            req = req.expression_attribute_values(format!(":from{i}"), s(st.as_str()));
        }
        if action.sends() {
            req = req.expression_attribute_values(":unix", n(chrono::Utc::now().timestamp()));
            req = req.expression_attribute_values(":run", s(crate::domain::id::Id::generate()));
        }
        if action.pins_scheduled_at() {
            // A campaign without a time never matches (a NULL attribute is not this string).
            req = req.expression_attribute_values(":scheduled_at", s(c.scheduled_at.as_deref().unwrap_or_default()));
        }
        if let (Action::Pause | Action::Suspend | Action::Unschedule, Some(r)) = (action, reason) {
            req = req.expression_attribute_values(":reason", s(r));
        }
        self.campaign_written(req.send().await?.attributes).await
    }

    /// Notes the campaign's measured rate (messages per second) and when it was measured.
    pub async fn note_rate(&self, campaign_id: &str, rate: f64, at_unix: i64) -> StoreResult<()> {
        self.update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("SET measured_rate = :rate, measured_at = :at")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":rate", AttributeValue::N(format!("{rate:.3}")))
            .expression_attribute_values(":at", n(at_unix))
            .send()
            .await?;
        Ok(())
    }

    /// The campaigns of an account that are sending right now.
    pub async fn sending_campaigns(&self, account_id: &str) -> StoreResult<Vec<Campaign>> {
        self.account_campaigns_in(account_id, CampaignStatus::Sending).await
    }

    /// The campaigns of an account in `status`.
    pub async fn account_campaigns_in(&self, account_id: &str, status: CampaignStatus) -> StoreResult<Vec<Campaign>> {
        let q =
            KeyQuery::index(Index::Gsi2, account_campaigns(account_id)).with_prefix(format!("{}#", status.as_str()));
        let keys = self.query_keys(&q).await?;
        self.with_counters(decode(self.batch_get(keys, None).await?)?).await
    }

    /// The next pending numbers of a campaign after `cursor` (up to `limit`), and the cursor
    /// to continue from (none once every pending number was read). A sharded campaign's are
    /// read from several shards at once, round robin, and interleaved, so that the send jobs
    /// made of them spread their writes over the shards; the cursor holds each shard's place.
    pub async fn pending_phones(
        &self,
        campaign: &Campaign,
        cursor: Option<&str>,
        limit: i32,
    ) -> StoreResult<(Vec<Phone>, Option<String>)> {
        let shards = campaign.recipient_shards;
        if shards == 0 {
            let (phones, last) = self.pending_in_shard(&campaign.id, None, cursor, limit).await?;
            return Ok((phones, last));
        }
        let mut at: ShardCursor = match cursor {
            Some(c) => serde_json::from_str(c).map_err(|e| StoreError::Corrupt(format!("dispatch cursor: {e}")))?,
            None => ShardCursor::default(),
        };
        // The shards still to read, from where the last step stopped.
        let mut waiting: std::collections::VecDeque<u32> =
            (0..shards).map(|i| (at.next + i) % shards).filter(|k| !at.done.contains(k)).collect();
        let mut columns = Vec::new();
        let (mut found, mut round) = (0usize, 0u32);
        // A round reads about PENDING_PER_SHARD_READ numbers from each of as many shards as
        // the numbers still wanted need; shards that hold fewer (a small campaign) leave some
        // wanted, and the next round reads twice as many shards, until `limit` or every shard
        // was read once.
        while found < limit as usize && !waiting.is_empty() {
            let wanted = limit as usize - found;
            let reads = (wanted.div_ceil(PENDING_PER_SHARD_READ) << round).clamp(1, waiting.len()).min(wanted);
            let chosen: Vec<u32> = waiting.drain(..reads).collect();
            let share = |i: usize| (wanted / reads + usize::from(i < wanted % reads)).max(1) as i32;
            let reads_of: Vec<(u32, Option<String>, i32)> =
                chosen.iter().enumerate().map(|(i, &k)| (k, at.after.get(&k).cloned(), share(i))).collect();
            let parts = futures_util::future::try_join_all(reads_of.into_iter().map(|(k, after, share)| async move {
                let (phones, last) = self.pending_in_shard(&campaign.id, Some(k), after.as_deref(), share).await?;
                StoreResult::Ok((k, phones, last))
            }))
            .await?;
            for (k, phones, last) in parts {
                match last {
                    Some(last) => {
                        at.after.insert(k, last);
                    }
                    None => {
                        at.after.remove(&k);
                        at.done.push(k);
                    }
                }
                found += phones.len();
                columns.push(phones.into_iter());
            }
            at.next = chosen.last().map_or(at.next, |k| (k + 1) % shards);
            round += 1;
        }
        // Interleaved: one from each shard in turn.
        let mut phones = Vec::new();
        while columns.iter().any(|c| c.len() > 0) {
            phones.extend(columns.iter_mut().filter_map(Iterator::next));
        }
        let more = at.done.len() < shards as usize;
        let cursor =
            more.then(|| serde_json::to_string(&at)).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((phones, cursor))
    }

    /// Up to `limit` pending numbers of one shard after `after`, in number order, and the last
    /// one read when the shard may hold more.
    async fn pending_in_shard(
        &self,
        campaign_id: &str,
        shard: Option<u32>,
        after: Option<&str>,
        limit: i32,
    ) -> StoreResult<(Vec<Phone>, Option<String>)> {
        let gsi2pk = recipients_in_status(campaign_id, RecipientStatus::Pending.as_str(), shard);
        let start: Option<Item> = after.map(|phone| {
            [
                ("GSI2PK".to_string(), s(&gsi2pk)),
                ("GSI2SK".to_string(), s(phone)),
                ("PK".to_string(), s(recipient_pk(campaign_id, shard))),
                ("SK".to_string(), s(recipient_sk(phone))),
            ]
            .into()
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI2")
            .key_condition_expression("GSI2PK = :pk")
            .expression_attribute_values(":pk", s(gsi2pk))
            .limit(limit.max(1))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let phones: Vec<Phone> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get("GSI2SK").and_then(|v| v.as_s().ok()).cloned().map(Phone::stored))
            .collect();
        let next = out.last_evaluated_key.and_then(|k| k.get("GSI2SK").and_then(|v| v.as_s().ok()).cloned());
        Ok((phones, next))
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(tx_failure(e)),
        }
    }

    /// Writes `items`, each built for the entry of `entries` at its position, plus `extra`
    /// (built from the entries kept) in one transaction; entries whose condition fails are
    /// left out and the rest written again, and a transaction that meets another is tried
    /// again after a back-off. Returns the entries written (by position in `entries`).
    async fn write_each<T>(
        &self,
        entries: &[T],
        item: impl Fn(&T) -> StoreResult<TransactWriteItem>,
        extra: impl Fn(&[&T]) -> StoreResult<Option<TransactWriteItem>>,
    ) -> StoreResult<Vec<usize>> {
        let mut kept: Vec<usize> = (0..entries.len()).collect();
        let mut attempt = 0;
        while !kept.is_empty() {
            let chosen: Vec<&T> = kept.iter().map(|i| &entries[*i]).collect();
            let mut items = chosen.iter().map(|e| item(e)).collect::<StoreResult<Vec<_>>>()?;
            items.extend(extra(&chosen)?);
            match self.transact(items).await {
                Ok(()) => return Ok(kept),
                Err(TxFailure::Conditions(failed)) => {
                    // Positions past the entries are the extra item: its condition failed.
                    if failed.iter().any(|i| *i >= kept.len()) {
                        return Err(StoreError::ConditionFailed);
                    }
                    let failed: HashSet<usize> = failed.into_iter().map(|i| kept[i]).collect();
                    kept.retain(|i| !failed.contains(i));
                }
                Err(TxFailure::Busy) if attempt + 1 < TX_ATTEMPTS => {
                    attempt += 1;
                    wait_before_retry(attempt).await;
                }
                Err(TxFailure::Busy) => return Err(StoreError::Conflict),
                Err(TxFailure::Other(e)) => return Err(e),
            }
        }
        Ok(kept)
    }

    /// Claims pending recipients for a send job, each on its own condition (still pending, not
    /// waiting for a retry job of its own), 25 to a request without a transaction: one write
    /// unit each. Each claim carries a new `tally` mark: `sending_count` counts it from the
    /// table's stream. Returns the numbers claimed.
    pub async fn claim_recipients(
        &self,
        campaign: &Campaign,
        phones: &[Phone],
        job_id: &str,
        now_unix: i64,
    ) -> StoreResult<Vec<Phone>> {
        let claim = |phone: &Phone| {
            Update::builder()
                .table_name(&self.table)
                .key("PK", s(recipient_pk(&campaign.id, shard_of(campaign.recipient_shards, phone))))
                .key("SK", s(recipient_sk(phone)))
                // The index entry stays in the pending partition (not sent yet): a claim moves no
                // index entry.
                .update_expression("SET #status = :sending, claim_id = :job, claimed_at = :now, tally = :tally")
                .condition_expression("#status = :pending AND (attribute_not_exists(retry_at) OR retry_at <= :now)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sending", s(RecipientStatus::Sending.as_str()))
                .expression_attribute_values(":pending", s(RecipientStatus::Pending.as_str()))
                .expression_attribute_values(":job", s(job_id))
                .expression_attribute_values(":now", n(now_unix))
                .expression_attribute_values(":tally", s(new_tally()))
                .build()
                .map_err(err)
        };
        let updates = phones.iter().map(claim).collect::<StoreResult<Vec<_>>>()?;
        let claimed = self.update_each(&updates).await?;
        Ok(phones.iter().zip(claimed).filter(|(_, c)| *c).map(|(p, _)| p.clone()).collect())
    }

    /// Records outcomes of one campaign's recipients, each on condition that its holder still
    /// holds it (a record whose holder no longer does is left out), without a transaction: one
    /// write unit each, 25 to a request. Each write carries a new `tally` mark, by which the
    /// counter of changes ([`crate::usecases::tally`], from the table's stream) counts it
    /// exactly once. Returns, per record, whether it was written.
    pub async fn record_outcomes(
        &self,
        campaign: &Campaign,
        records: &[Record<'_>],
        now: &str,
    ) -> StoreResult<Vec<bool>> {
        let updates = records.iter().map(|r| self.outcome_update(campaign, r, now)).collect::<StoreResult<Vec<_>>>()?;
        self.update_each(&updates).await
    }

    /// Puts failed recipients (as read) back to pending for `retry-failed`, each only while it
    /// is still the failure that was read, with the counters they leave (failed, processed,
    /// and sent for a message WhatsApp had taken before it failed) in the same transactions.
    /// The earlier message's id and times go: its late statuses concern no send any more.
    /// Returns how many were put back.
    pub async fn requeue_failed(&self, campaign: &Campaign, failed: &[&Recipient]) -> StoreResult<usize> {
        let item = |r: &&Recipient| {
            let shard = shard_of(campaign.recipient_shards, &r.phone_number);
            let pending = RecipientStatus::Pending.as_str();
            let update = Update::builder()
                .table_name(&self.table)
                .key("PK", s(recipient_pk(&campaign.id, shard)))
                .key("SK", s(recipient_sk(&r.phone_number)))
                .update_expression(
                    "SET #status = :pending, GSI2PK = :gsi2pk, GSI2SK = :phone REMOVE wamid, sent_at, delivered_at, \
                     read_at, failed_at, error_code, error_message, retry_at, claim_id, claimed_at, GSI3PK, GSI3SK",
                )
                .condition_expression("#status = :failed AND failed_at = :failed_at")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":pending", s(pending))
                .expression_attribute_values(":failed", s(RecipientStatus::Failed.as_str()))
                .expression_attribute_values(":failed_at", s(r.failed_at.as_deref().unwrap_or_default()))
                .expression_attribute_values(":gsi2pk", s(recipients_in_status(&campaign.id, pending, shard)))
                .expression_attribute_values(":phone", s(r.phone_number.as_str()))
                .build()
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
            Ok(TransactWriteItem::builder().update(update).build())
        };
        let counters = |kept: &[&&Recipient]| {
            let k = kept.len() as i64;
            let sent = kept.iter().filter(|r| r.wamid.is_some()).count() as i64;
            let d = Counters { failed: -k, processed: -k, sent: -sent, ..Default::default() };
            if d.is_zero() { Ok(None) } else { self.counter_update(&campaign.id, d).map(Some) }
        };
        let mut requeued = 0;
        for chunk in failed.chunks(RECIPIENTS_PER_TRANSACTION) {
            requeued += self.write_each(chunk, item, counters).await?.len();
        }
        Ok(requeued)
    }

    /// The status index holds recipients still to send (pending, and sending) and failed ones:
    /// a sent recipient leaves it (its later statuses move no index entry), a failed one moves
    /// to the failed partition, a released one stays.
    fn outcome_update(&self, campaign: &Campaign, r: &Record, now: &str) -> StoreResult<Update> {
        let shard = shard_of(campaign.recipient_shards, r.phone);
        let mut set = vec!["#status = :to", "tally = :tally"];
        let mut remove = vec!["claim_id", "claimed_at"];
        let mut values: Vec<(&str, AttributeValue)> = Vec::new();
        let status = match &r.outcome {
            Outcome::Sent { wamid } => {
                set.extend(["wamid = :wamid", "sent_at = :now", "GSI3PK = :gsi3pk", "GSI3SK = :gsi3sk"]);
                values.extend([(":wamid", s(wamid)), (":gsi3pk", s(wamid_pk(wamid))), (":gsi3sk", s("R"))]);
                remove.extend(["retry_at", "GSI2PK", "GSI2SK"]);
                RecipientStatus::Sent
            }
            Outcome::Failed { code, message } => {
                set.extend(["failed_at = :now", "error_message = :msg", "GSI2PK = :gsi2pk", "GSI2SK = :phone"]);
                values.push((":msg", s(message)));
                match code {
                    Some(c) => {
                        set.push("error_code = :code");
                        values.push((":code", n(c)));
                    }
                    None => remove.push("error_code"),
                }
                remove.push("retry_at");
                RecipientStatus::Failed
            }
            Outcome::Released { retry_at } => {
                match retry_at {
                    Some(at) => {
                        set.push("retry_at = :retry_at");
                        values.push((":retry_at", n(at)));
                    }
                    None => remove.push("retry_at"),
                }
                set.extend(["GSI2PK = :gsi2pk", "GSI2SK = :phone"]);
                RecipientStatus::Pending
            }
        };
        values.extend([(":to", s(status.as_str())), (":tally", s(new_tally()))]);
        if set.contains(&"GSI2PK = :gsi2pk") {
            values.push((":gsi2pk", s(recipients_in_status(&campaign.id, status.as_str(), shard))));
            values.push((":phone", s(r.phone)));
        }
        if set.iter().any(|a| a.contains(":now")) {
            values.push((":now", s(now)));
        }
        let condition = match r.holder {
            Holder::Job(job) => {
                values.extend([(":held", s(RecipientStatus::Sending.as_str())), (":job", s(job))]);
                "#status = :held AND claim_id = :job"
            }
            Holder::Unclaimed => {
                values.push((":held", s(RecipientStatus::Pending.as_str())));
                "#status = :held"
            }
            Holder::Stale { job, claimed_at } => {
                values.extend([
                    (":held", s(RecipientStatus::Sending.as_str())),
                    (":job", s(job)),
                    (":claimed_at", n(claimed_at)),
                ]);
                "#status = :held AND claim_id = :job AND claimed_at = :claimed_at"
            }
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(recipient_pk(&campaign.id, shard)))
            .key("SK", s(recipient_sk(r.phone)))
            .update_expression(format!("SET {} REMOVE {}", set.join(", "), remove.join(", ")))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status");
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        update.build().map_err(err)
    }

    /// The recipients of a job as they are stored now, (with `account_id`) which of their
    /// numbers opted out of the account's marketing messages, and (with `business`, under the
    /// tier's cap) the business's people reached and when each of these was counted: one
    /// BatchGetItem for up to 50 numbers (two, run at once, when all three are read).
    pub async fn job_recipients(
        &self,
        campaign: &Campaign,
        phones: &[Phone],
        account_id: Option<&str>,
        business: Option<&str>,
    ) -> StoreResult<JobRead> {
        let key = |pk: String, sk: String| HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))]);
        let at = |p: &Phone| recipient_pk(&campaign.id, shard_of(campaign.recipient_shards, p));
        let mut keys: Vec<Item> = phones.iter().map(|p| key(at(p), recipient_sk(p))).collect();
        if let Some(account) = account_id {
            keys.extend(phones.iter().map(|p| key(account_pk(account), opt_out_sk(p))));
        }
        if let Some(business) = business {
            keys.extend(super::daily_cap::cap_keys(business, phones));
        }
        let mut read = JobRead::default();
        for item in self.batch_get(keys, None).await? {
            let sk = item.get("SK").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if sk.starts_with(RECIPIENT_PREFIX) {
                read.recipients.push(serde_dynamo::from_item(item)?);
            } else if let Some(phone) = sk.strip_prefix("OPTOUT#") {
                read.opted_out.insert(Phone::stored(phone.to_string()));
            } else if sk == LIMIT_SK {
                read.reached = super::daily_cap::reached_of(&item);
            } else if let Some((phone, hour)) = super::daily_cap::contact_of(&item) {
                read.counted_in.insert(phone, hour);
            }
        }
        Ok(read)
    }

    /// The recipients at these numbers, as stored now.
    pub async fn recipients(&self, campaign: &Campaign, phones: &[Phone]) -> StoreResult<Vec<Recipient>> {
        Ok(self.job_recipients(campaign, phones, None, None).await?.recipients)
    }

    /// Reserves `count` consecutive send slots `interval_us` apart on the account's pace,
    /// shared by every sender, if the first one is within `horizon` from now; otherwise says
    /// when to try again. One write when the account is busy, two when it is idle; no read: the
    /// pace is a "next free slot" time pushed forward atomically.
    pub async fn reserve_slots(
        &self,
        account_id: &str,
        count: u64,
        interval_us: u64,
        horizon: Duration,
    ) -> StoreResult<Reservation> {
        let span = (count * interval_us) as i64;
        let horizon = horizon.as_micros() as i64;
        for _ in 0..8 {
            // Slots start a little ahead, so they are still ahead when the answer arrives.
            let asked = now_micros();
            let lead = (2 * self.pace_latency_us.load(Ordering::Relaxed)).clamp(SLOT_LEAD_US, MAX_SLOT_LEAD_US);
            let now = asked + lead;
            // Busy account: the next free slot is ahead; take the span from it if it is within
            // the horizon.
            let busy = self
                .update(account_pk(account_id), PACE_SK)
                .update_expression("SET next_slot = next_slot + :span")
                .condition_expression("next_slot >= :now AND next_slot <= :latest")
                .expression_attribute_values(":span", n(span))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":latest", n(now + horizon))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            self.note_pace_latency(now_micros() - asked);
            let next_slot = |item: Option<&Item>| {
                item.and_then(|a| a.get("next_slot")).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok())
            };
            match busy {
                Ok(out) => {
                    let next = next_slot(out.attributes.as_ref())
                        .ok_or_else(|| StoreError::Corrupt("pace item without next_slot".into()))?;
                    return Ok(Reservation::Granted(next - span));
                }
                Err(e) => {
                    let old = match e.as_service_error() {
                        Some(UpdateItemError::ConditionalCheckFailedException(c)) => Some(next_slot(c.item.as_ref())),
                        _ => None,
                    };
                    match old {
                        Some(Some(next)) if next > now + horizon => {
                            return Ok(Reservation::Busy { retry_at: next - horizon });
                        }
                        Some(_) => {} // idle (or just moved): the idle path below
                        None => return Err(e.into()),
                    }
                }
            }
            // Idle account: start now.
            let idle = self
                .update(account_pk(account_id), PACE_SK)
                .update_expression("SET next_slot = :end")
                .condition_expression("attribute_not_exists(next_slot) OR next_slot < :now")
                .expression_attribute_values(":end", n(now + span))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match idle {
                Ok(_) => return Ok(Reservation::Granted(now)),
                Err(e) => match StoreError::from(e) {
                    // Another sender moved the slot meanwhile: look again.
                    StoreError::ConditionFailed => continue,
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Conflict)
    }

    fn note_pace_latency(&self, took_us: i64) {
        let old = self.pace_latency_us.load(Ordering::Relaxed);
        self.pace_latency_us.store((old * 7 + took_us) / 8, Ordering::Relaxed);
    }

    /// Holds every sender of the account back until `until_us` (a throughput error from
    /// WhatsApp): the next free slot moves there unless it is later already. Never
    /// cumulative: many errors at once hold the account back once.
    pub async fn hold_account(&self, account_id: &str, until_us: i64) -> StoreResult<()> {
        let res = self
            .update(account_pk(account_id), PACE_SK)
            .update_expression("SET next_slot = :until")
            .condition_expression("attribute_not_exists(next_slot) OR next_slot < :until")
            .expression_attribute_values(":until", n(until_us))
            .send()
            .await;
        applied(res).map(|_| ())
    }

    /// The account's next free send slot (unix microseconds), if it has one.
    pub async fn next_slot(&self, account_id: &str) -> StoreResult<Option<i64>> {
        let item = self.get_raw(account_pk(account_id), PACE_SK).await?;
        Ok(item.and_then(|i| i.get("next_slot").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())))
    }

    /// Campaigns that are sending right now (all accounts).
    pub async fn campaigns_sending(&self) -> StoreResult<Vec<Campaign>> {
        let q = KeyQuery::index(Index::Gsi3, campaigns_in_status(CampaignStatus::Sending.as_str()));
        let keys = self.query_keys(&q).await?;
        self.with_counters(decode(self.batch_get(keys, None).await?)?).await
    }

    /// Up to about `limit` recipients of a campaign in `status` (by the status index), the
    /// first of each shard in number order.
    pub async fn recipients_in(
        &self,
        campaign: &Campaign,
        status: RecipientStatus,
        limit: u32,
    ) -> StoreResult<Vec<Recipient>> {
        let shards = recipient_shards(campaign.recipient_shards);
        let each = limit.div_ceil(shards.len() as u32);
        let keys: Vec<Vec<Item>> = stream::iter(shards)
            .map(|k| {
                let mut q = KeyQuery::index(Index::Gsi2, recipients_in_status(&campaign.id, status.as_str(), k));
                q.newest_first = false;
                async move { self.query_page(&q, 1, each).await }
            })
            .buffered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        let keys = keys.into_iter().flatten().map(super::table_key).collect();
        decode(self.batch_get(keys, None).await?)
    }

    /// The keys of every recipient of a campaign, shard by shard.
    pub async fn recipient_keys(&self, campaign: &Campaign) -> StoreResult<Vec<Item>> {
        let mut keys = Vec::new();
        for k in recipient_shards(campaign.recipient_shards) {
            keys.extend(self.query_keys(&KeyQuery::table(recipient_pk(&campaign.id, k), RECIPIENT_PREFIX)).await?);
        }
        Ok(keys)
    }

    /// Every recipient of a campaign (the reconciler's recount).
    pub async fn all_recipients(&self, campaign: &Campaign) -> StoreResult<Vec<Recipient>> {
        let keys = self.recipient_keys(campaign).await?;
        decode(self.batch_get(keys, None).await?)
    }

    /// Starts a new dispatch run of a sending campaign (the reconciler found recipients no job
    /// holds): the steps and first-delivery jobs of the earlier run stop. Returns the run.
    pub async fn new_dispatch_run(&self, campaign_id: &str) -> StoreResult<String> {
        let run = crate::domain::id::Id::generate().into();
        self.update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("SET dispatch_run = :run")
            .condition_expression("#status = :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CampaignStatus::Sending.as_str()))
            .expression_attribute_values(":run", s(&run))
            .send()
            .await?;
        Ok(run)
    }

    /// Notes the progress the reconciler saw on a sending campaign (`processed_count` and when),
    /// so that its next pass can tell a campaign that stopped moving.
    pub async fn note_progress(&self, campaign_id: &str, processed: u64, at_unix: i64) -> StoreResult<()> {
        self.update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("SET reconciled_processed = :p, reconciled_at = :at")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":p", n(processed))
            .expression_attribute_values(":at", n(at_unix))
            .send()
            .await?;
        Ok(())
    }

    /// What the reconciler noted last on the campaign: `(processed_count, unix time)`.
    pub async fn noted_progress(&self, campaign_id: &str) -> StoreResult<Option<(u64, i64)>> {
        let item = self.get_raw(campaign_pk(campaign_id), CAMPAIGN_SK).await?;
        let num = |i: &Item, k: &str| i.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        Ok(item.and_then(|i| Some((num(&i, "reconciled_processed")? as u64, num(&i, "reconciled_at")?))))
    }
}
