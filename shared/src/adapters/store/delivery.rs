//! Delivery statuses on recipients, the campaign counters they move, and opt-outs.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::keys::*;
use super::{BATCH_CONCURRENCY, Db, Index, Item, KeyQuery, StoreError, StoreResult, decode, n, s, text};
use crate::domain::account::Account;
use crate::domain::campaign::Counters;
use crate::domain::delivery::Progress;
use crate::domain::id::Id;
use crate::domain::phone::Phone;
use crate::domain::recipient::{Recipient, RecipientKey, RecipientStatus};

/// At most this many recipients change in one transaction, with the campaign's counters as
/// the hundredth item (DynamoDB's limit).
pub const RECIPIENTS_PER_TRANSACTION: usize = 99;

/// A recipient as it was read, and the progress the statuses received move it to.
pub struct DeliveryChange<'a> {
    pub before: &'a Recipient,
    pub after: Progress,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Dynamo(e.to_string())
}

impl Db {
    /// For each of these wamids that was sent to a recipient, the wamid and that recipient's
    /// key (one query of the wamid index each, several at once).
    pub async fn recipients_by_wamid(&self, wamids: &[String]) -> StoreResult<Vec<(String, RecipientKey)>> {
        let found: Vec<(String, Vec<Item>)> = stream::iter(wamids.to_vec())
            .map(|w| async move {
                let q = KeyQuery::index(Index::Gsi3, wamid_pk(&w));
                self.query_keys(&q).await.map(|keys| (w, keys))
            })
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .flat_map(|(w, keys)| keys.into_iter().map(move |k| (w.clone(), k)))
            .filter_map(|(w, k)| {
                let pk = text(&k, "PK")?;
                let (campaign, shard) = campaign_of_recipient_pk(&pk)?;
                let campaign_id = Id::stored(campaign.to_string());
                let phone = Phone::stored(text(&k, "SK")?.strip_prefix(RECIPIENT_PREFIX)?.to_string());
                Some((w, RecipientKey { campaign_id, phone, shard }))
            })
            .collect())
    }

    /// The recipients at these keys (missing ones left out).
    pub async fn recipients_at(&self, keys: &[RecipientKey]) -> StoreResult<Vec<Recipient>> {
        let keys = keys.iter().map(|k| {
            [
                ("PK".to_string(), s(recipient_pk(&k.campaign_id, k.shard))),
                ("SK".to_string(), s(recipient_sk(&k.phone))),
            ]
            .into()
        });
        decode(self.batch_get(keys.collect(), None).await?)
    }

    /// Writes recipients' new progress, each on condition it is still as it was read (its
    /// delivery version and message id), without a transaction (one write unit each, 25 to a
    /// request). Each write carries a new `tally` mark, by which the counter of changes
    /// ([`crate::usecases::tally`], from the table's stream) counts it exactly once. Returns,
    /// per change, whether it was written: one that was not met a concurrent change (read again
    /// and retry). Applying statuses already applied finds nothing to change, so a repeated
    /// webhook changes nothing.
    pub async fn record_deliveries(&self, campaign_id: &str, changes: &[DeliveryChange<'_>]) -> StoreResult<Vec<bool>> {
        let updates = changes.iter().map(|c| self.progress_update(campaign_id, c)).collect::<StoreResult<Vec<_>>>()?;
        self.update_each(&updates).await
    }

    fn progress_update(&self, campaign_id: &str, c: &DeliveryChange) -> StoreResult<Update> {
        let p = &c.after;
        let version = c.before.delivery_version.unwrap_or(0);
        let mut set: Vec<String> =
            ["#status = :status", "delivery_version = :next", "tally = :tally"].map(String::from).into();
        let mut remove = Vec::new();
        let mut values: Vec<(&str, AttributeValue)> = vec![
            (":status", s(p.status.as_str())),
            (":next", n(version + 1)),
            (":tally", s(super::partiql::new_tally())),
        ];
        // The status index holds failed recipients (and those not sent yet): only a failure
        // reported, or one undone by a delivery, moves an index entry.
        let failed = |st: RecipientStatus| st == RecipientStatus::Failed;
        if failed(p.status) && !failed(c.before.status) {
            set.extend(["GSI2PK = :gsi2pk", "GSI2SK = :phone"].map(String::from));
            values.push((":gsi2pk", s(recipients_in_status(campaign_id, p.status.as_str(), c.before.shard))));
            values.push((":phone", s(&c.before.phone_number)));
        } else if failed(c.before.status) && !failed(p.status) {
            remove.extend(["GSI2PK", "GSI2SK"]);
        }
        let optional = [
            ("delivered_at", ":delivered_at", p.delivered_at.clone().map(s)),
            ("read_at", ":read_at", p.read_at.clone().map(s)),
            ("failed_at", ":failed_at", p.failed_at.clone().map(s)),
            ("error_code", ":error_code", p.error_code.map(n)),
            ("error_message", ":error_message", p.error_message.clone().map(s)),
            ("billed", ":billed", p.billed.map(|b| s(b.as_str()))),
        ];
        for (attr, placeholder, value) in optional {
            match value {
                Some(v) => {
                    set.push(format!("{attr} = {placeholder}"));
                    values.push((placeholder, v));
                }
                None => remove.push(attr),
            }
        }
        // A send whose outcome was unknown turns out sent: its message id, and the index that
        // finds it by that id.
        let adopted = c.before.wamid.is_none().then_some(p.wamid.as_deref()).flatten();
        if let Some(wamid) = adopted {
            set.extend(["wamid = :adopted", "GSI3PK = :gsi3pk", "GSI3SK = :gsi3sk"].map(String::from));
            values.extend([(":adopted", s(wamid)), (":gsi3pk", s(wamid_pk(wamid))), (":gsi3sk", s("R"))]);
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut condition = match c.before.delivery_version {
            Some(_) => {
                values.push((":version", n(version)));
                "delivery_version = :version".to_string()
            }
            None => "attribute_not_exists(delivery_version)".to_string(),
        };
        match &c.before.wamid {
            Some(w) => {
                condition.push_str(" AND wamid = :wamid");
                values.push((":wamid", s(w)));
            }
            None => condition.push_str(" AND attribute_not_exists(wamid)"),
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(recipient_pk(campaign_id, c.before.shard)))
            .key("SK", s(recipient_sk(&c.before.phone_number)))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status");
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        update.build().map_err(err)
    }

    /// The account that owns the WhatsApp business number `phone_number_id`, if any.
    pub async fn account_by_phone_number_id(&self, phone_number_id: &str) -> StoreResult<Option<Account>> {
        Ok(self.all_accounts().await?.into_iter().find(|a| a.phone_number_id == phone_number_id))
    }

    /// The accounts of a WhatsApp Business Account (Meta's `entry.id` in template webhooks).
    pub async fn accounts_of_business(&self, business_account_id: &str) -> StoreResult<Vec<Account>> {
        let mut accounts = self.all_accounts().await?;
        accounts.retain(|a| a.business_account_id == business_account_id);
        Ok(accounts)
    }

    /// Every account (a deployment has a handful).
    async fn all_accounts(&self) -> StoreResult<Vec<Account>> {
        let keys = self.query_keys(&KeyQuery::index(Index::Gsi1, ALL_ACCOUNTS.into())).await?;
        decode(self.batch_get(keys, None).await?)
    }

    /// Records that the recipient answered its message `wamid` at `at` (`clicked`: by the
    /// button of that text), with the campaign's count, in one transaction: only the first
    /// answer (and the first press) counts. Returns whether it counted.
    pub async fn record_answer(
        &self,
        campaign: &crate::domain::campaign::Campaign,
        phone: &str,
        wamid: &str,
        at: &str,
        clicked: Option<&str>,
    ) -> StoreResult<bool> {
        let shard = crate::domain::recipient::shard_of(campaign.recipient_shards, phone);
        let (first, counts) = match clicked {
            Some(_) => ("clicked_at", Counters { clicked: 1, ..Default::default() }),
            None => ("replied_at", Counters { replied: 1, ..Default::default() }),
        };
        let mut update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .key("PK", s(recipient_pk(&campaign.id, shard)))
            .key("SK", s(recipient_sk(phone)))
            .update_expression(match clicked {
                Some(_) => "SET clicked_at = :at, clicked_button = :button",
                None => "SET replied_at = :at",
            })
            .condition_expression(format!("attribute_not_exists({first}) AND wamid = :wamid"))
            .expression_attribute_values(":at", s(at))
            .expression_attribute_values(":wamid", s(wamid));
        if let Some(button) = clicked {
            update = update.expression_attribute_values(":button", s(button));
        }
        let update = update.build().map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let items =
            vec![TransactWriteItem::builder().update(update).build(), self.counter_update(&campaign.id, counts)?];
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) => match StoreError::from(e) {
                StoreError::ConditionFailed => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Records that `phone` stopped marketing messages from the account (`reason` says how we
    /// know), or removes that record when `stop` is false.
    pub async fn set_opt_out(
        &self,
        account_id: &str,
        phone: &str,
        stop: bool,
        reason: &str,
        now: &str,
    ) -> StoreResult<()> {
        let (pk, sk) = (s(account_pk(account_id)), s(opt_out_sk(phone)));
        if stop {
            let put = self.client.put_item().table_name(&self.table).item("PK", pk).item("SK", sk);
            put.item("phone_number", s(phone)).item("reason", s(reason)).item("opted_out_at", s(now)).send().await?;
        } else {
            self.client.delete_item().table_name(&self.table).key("PK", pk).key("SK", sk).send().await?;
        }
        Ok(())
    }

    /// Which of `phones` opted out of the account's marketing messages.
    pub async fn opted_out(&self, account_id: &str, phones: &[&str]) -> StoreResult<HashSet<Phone>> {
        let pk = s(account_pk(account_id));
        let keys = phones.iter().map(|p| [("PK".to_string(), pk.clone()), ("SK".to_string(), s(opt_out_sk(p)))].into());
        let found = self.batch_get(keys.collect(), Some("PK, SK, phone_number")).await?;
        Ok(found.iter().filter_map(|i| text(i, "phone_number")).map(Phone::stored).collect())
    }
}
