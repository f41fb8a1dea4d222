//! The store operations of the sending side: campaign transitions, recipient claims and
//! outcomes, exactly-once counters, paging pending recipients, and the account's pace.

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};

use super::campaigns::decode_one;
use super::keys::*;
use super::{Db, Item, KeyQuery, StoreError, StoreResult, decode, n, s};
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::recipient::{Recipient, RecipientStatus};

/// An outcome to store for a claimed recipient.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// WhatsApp accepted the message.
    Sent { wamid: String },
    /// The message was refused or its outcome is unknown; never sent again automatically.
    Failed { code: Option<i64>, message: String },
    /// Not sent (campaign paused, pair rate limit): back to pending for a later send.
    Released,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Dynamo(e.to_string())
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
                remove.push("pause_reason");
            }
            Action::Complete => set.push("completed_at = :now"),
            Action::Pause if reason.is_some() => set.push("pause_reason = :reason"),
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
        }
        if action.pins_scheduled_at() {
            // A campaign without a time never matches (a NULL attribute is not this string).
            req = req.expression_attribute_values(":scheduled_at", s(c.scheduled_at.clone().unwrap_or_default()));
        }
        if let (Action::Pause | Action::Unschedule, Some(r)) = (action, reason) {
            req = req.expression_attribute_values(":reason", s(r));
        }
        decode_one(req.send().await?.attributes)
    }

    /// The campaigns of an account that are sending right now.
    pub async fn sending_campaigns(&self, account_id: &str) -> StoreResult<Vec<Campaign>> {
        let q = KeyQuery::index("GSI2", account_campaigns(account_id))
            .with_prefix(format!("{}#", CampaignStatus::Sending.as_str()));
        let keys = self.query_keys(&q).await?;
        decode(self.batch_get(keys, None).await?)
    }

    /// A page of the campaign's pending numbers after `cursor`, in number order, and the
    /// cursor to continue from (none when the page was the last).
    pub async fn pending_phones(
        &self,
        campaign_id: &str,
        cursor: Option<&str>,
        limit: i32,
    ) -> StoreResult<(Vec<String>, Option<String>)> {
        let gsi2pk = recipients_in_status(campaign_id, RecipientStatus::Pending.as_str());
        let start: Option<Item> = cursor.map(|phone| {
            [
                ("GSI2PK".to_string(), s(&gsi2pk)),
                ("GSI2SK".to_string(), s(phone)),
                ("PK".to_string(), s(campaign_pk(campaign_id))),
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
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let phones: Vec<String> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get("GSI2SK").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        let next = out.last_evaluated_key.and_then(|k| k.get("GSI2SK").and_then(|v| v.as_s().ok()).cloned());
        Ok((phones, next))
    }

    /// Claims a pending recipient for a send job. `None`: it is not pending (already sent,
    /// failed, or claimed by someone else).
    pub async fn claim(
        &self,
        campaign_id: &str,
        phone: &str,
        job_id: &str,
        now: i64,
    ) -> StoreResult<Option<Recipient>> {
        let res = self
            .update(campaign_pk(campaign_id), recipient_sk(phone))
            .update_expression("SET #status = :sending, GSI2PK = :gsi2pk, claim_id = :job, claimed_at = :now")
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(RecipientStatus::Sending.as_str()))
            .expression_attribute_values(":pending", s(RecipientStatus::Pending.as_str()))
            .expression_attribute_values(
                ":gsi2pk",
                s(recipients_in_status(campaign_id, RecipientStatus::Sending.as_str())),
            )
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(decode_one(out.attributes)?)),
            Err(e) => match StoreError::from(e) {
                StoreError::ConditionFailed => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Stores the outcome of a claim held by `job_id`, with the tally that will count it.
    /// Returns false when the claim was no longer the job's (another holder resolved it
    /// first), so nothing was written.
    pub async fn record(
        &self,
        campaign_id: &str,
        phone: &str,
        job_id: &str,
        outcome: &Outcome,
        tally: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let (status, mut set, mut values): (RecipientStatus, Vec<&str>, Vec<(&str, AttributeValue)>) = match outcome {
            Outcome::Sent { wamid } => (
                RecipientStatus::Sent,
                vec!["wamid = :wamid", "sent_at = :now", "GSI3PK = :gsi3pk", "GSI3SK = :gsi3sk"],
                vec![(":wamid", s(wamid)), (":gsi3pk", s(wamid_pk(wamid))), (":gsi3sk", s("R"))],
            ),
            Outcome::Failed { code, message } => {
                let mut v = vec![(":msg", s(message))];
                let mut set = vec!["failed_at = :now", "error_message = :msg"];
                if let Some(c) = code {
                    v.push((":code", n(c)));
                    set.push("error_code = :code");
                }
                (RecipientStatus::Failed, set, v)
            }
            Outcome::Released => (RecipientStatus::Pending, vec![], vec![]),
        };
        if *outcome != Outcome::Released {
            set.push("tally = :tally");
            values.push((":tally", s(tally)));
        }
        set.extend(["#status = :to", "GSI2PK = :gsi2pk"]);
        values.push((":to", s(status.as_str())));
        values.push((":gsi2pk", s(recipients_in_status(campaign_id, status.as_str()))));
        let mut expr = format!("SET {}", set.join(", "));
        if *outcome == Outcome::Released {
            expr.push_str(" REMOVE claim_id, claimed_at");
        }
        if expr.contains(":now") {
            values.push((":now", s(now)));
        }
        let mut req = self
            .update(campaign_pk(campaign_id), recipient_sk(phone))
            .update_expression(expr)
            .condition_expression("#status = :sending AND claim_id = :job")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(RecipientStatus::Sending.as_str()))
            .expression_attribute_values(":job", s(job_id));
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match StoreError::from(e) {
                StoreError::ConditionFailed => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The recipients of a job as they are stored now.
    pub async fn recipients(&self, campaign_id: &str, phones: &[String]) -> StoreResult<Vec<Recipient>> {
        let pk = s(campaign_pk(campaign_id));
        let keys =
            phones.iter().map(|p| [("PK".to_string(), pk.clone()), ("SK".to_string(), s(recipient_sk(p)))].into());
        decode(self.batch_get(keys.collect(), None).await?)
    }

    /// Adds the outcomes of `recipients` to the campaign's counters, once per tally: each
    /// outcome was recorded with the tally of the sender's chunk, and a tally is applied in a
    /// transaction that also writes its `TALLY#` record on condition it does not exist yet. A
    /// redelivered job, a second worker or a recovery find the record and add nothing; a tally
    /// whose sender stopped before applying it is applied by whoever reads its recipients next.
    /// Returns whether anything was added.
    pub async fn apply_tallies(&self, campaign_id: &str, recipients: &[Recipient]) -> StoreResult<bool> {
        let mut tallies: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for r in recipients {
            let (Some(t), false) = (&r.tally, matches!(r.status, RecipientStatus::Pending | RecipientStatus::Sending))
            else {
                continue;
            };
            let e = tallies.entry(t.as_str()).or_default();
            if r.wamid.is_some() { e.0 += 1 } else { e.1 += 1 }
        }
        if tallies.is_empty() {
            return Ok(false);
        }
        let pk = s(campaign_pk(campaign_id));
        let keys = tallies.keys().map(|t| [("PK".to_string(), pk.clone()), ("SK".to_string(), s(tally_sk(t)))].into());
        let applied: std::collections::HashSet<String> = self
            .batch_get(keys.collect(), Some("PK, SK"))
            .await?
            .iter()
            .filter_map(|i| i.get("SK")?.as_s().ok().cloned())
            .collect();
        let mut added = false;
        let expires = chrono::Utc::now().timestamp() + 7 * 24 * 3600;
        for (t, (sent, failed)) in tallies {
            if applied.contains(&tally_sk(t)) {
                continue;
            }
            let record = Put::builder()
                .table_name(&self.table)
                .item("PK", pk.clone())
                .item("SK", s(tally_sk(t)))
                .item("sent", n(sent))
                .item("failed", n(failed))
                .item("expires_at", n(expires))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(err)?;
            let counters = Update::builder()
                .table_name(&self.table)
                .key("PK", pk.clone())
                .key("SK", s(CAMPAIGN_SK))
                .update_expression("ADD sent_count :sent, failed_count :failed, processed_count :processed")
                .expression_attribute_values(":sent", n(sent))
                .expression_attribute_values(":processed", n(sent + failed))
                .expression_attribute_values(":failed", n(failed))
                .build()
                .map_err(err)?;
            let tx = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(record).build())
                .transact_items(TransactWriteItem::builder().update(counters).build());
            match tx.send().await.map_err(StoreError::from) {
                Ok(_) => added = true,
                Err(StoreError::ConditionFailed) => {} // applied by someone else meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(added)
    }

    /// Reserves `count` consecutive send slots `interval_us` apart on the account's pace,
    /// shared by every sender: returns when the first slot is (unix microseconds). One write,
    /// no read: the pace is a "next free slot" time pushed forward atomically.
    pub async fn reserve_slots(&self, account_id: &str, count: u64, interval_us: u64) -> StoreResult<i64> {
        let span = (count * interval_us) as i64;
        loop {
            // Slots start a little ahead, so they are still ahead when the answer arrives.
            let now = now_micros() + SLOT_LEAD_US;
            // Busy account: the next free slot is in the future; take the span after it.
            let busy = self
                .update(account_pk(account_id), PACE_SK)
                .update_expression("SET next_slot = next_slot + :span")
                .condition_expression("next_slot >= :now")
                .expression_attribute_values(":span", n(span))
                .expression_attribute_values(":now", n(now))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match busy {
                Ok(out) => {
                    let next = out
                        .attributes
                        .and_then(|a| {
                            a.get("next_slot").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok())
                        })
                        .ok_or_else(|| StoreError::Corrupt("pace item without next_slot".into()))?;
                    return Ok(next - span);
                }
                Err(e) => match StoreError::from(e) {
                    StoreError::ConditionFailed => {}
                    other => return Err(other),
                },
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
                Ok(_) => return Ok(now),
                Err(e) => match StoreError::from(e) {
                    // Another sender moved the slot meanwhile: take the busy path again.
                    StoreError::ConditionFailed => continue,
                    other => return Err(other),
                },
            }
        }
    }
}

/// How far ahead of the reservation the first slot is at least (covers the store's latency).
pub const SLOT_LEAD_US: i64 = 150_000;

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
