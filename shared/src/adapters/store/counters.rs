//! A campaign's counters live in [`COUNTER_SHARDS`] small items beside the campaign item
//! (`CAMPAIGN#<id>` / `#COUNT#<n>`). Every change is added to one of them, chosen at random,
//! in the same transaction as the recipients it counts (imports, retry-failed, replies) or, for
//! sends' claims and outcomes and delivery statuses, by the consumer of the table's
//! stream with the mark of the run it adds ([`Db::add_tallies`]); reading a campaign sums them. So no
//! item takes more than a few counter writes a second whatever the send rate, the campaign
//! item itself is written only by status changes (a pause never races a count), and a count
//! of a campaign deleted meanwhile cannot bring its campaign item back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};

use super::campaigns::decode_one;
use super::keys::*;
use super::{Db, Item, StoreError, StoreResult, n, s};
use crate::domain::campaign::{Campaign, Counters};

/// How many counter items a campaign has.
pub const COUNTER_SHARDS: u32 = 8;

const FIELDS: [&str; 12] = [
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "processed_count",
    "sending_count",
    "billable_marketing",
    "billable_utility",
    "billable_authentication",
    "billable_service",
    "replied_count",
    "clicked_count",
];
/// The update expression that adds to every counter.
const ADD_ALL: &str = "ADD sent_count :sent_count, delivered_count :delivered_count, read_count :read_count, \
     failed_count :failed_count, processed_count :processed_count, sending_count :sending_count, \
     billable_marketing :billable_marketing, billable_utility :billable_utility, \
     billable_authentication :billable_authentication, billable_service :billable_service, \
     replied_count :replied_count, clicked_count :clicked_count, version :one";

fn number(item: &Item, key: &str) -> i64 {
    item.get(key).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn counters(item: &Item) -> Counters {
    Counters {
        sent: number(item, FIELDS[0]),
        delivered: number(item, FIELDS[1]),
        read: number(item, FIELDS[2]),
        failed: number(item, FIELDS[3]),
        processed: number(item, FIELDS[4]),
        sending: number(item, FIELDS[5]),
        billable: [6, 7, 8, 9].map(|i| number(item, FIELDS[i])),
        replied: number(item, FIELDS[10]),
        clicked: number(item, FIELDS[11]),
    }
}

fn values(d: Counters) -> [(&'static str, i64); 12] {
    [
        (FIELDS[0], d.sent),
        (FIELDS[1], d.delivered),
        (FIELDS[2], d.read),
        (FIELDS[3], d.failed),
        (FIELDS[4], d.processed),
        (FIELDS[5], d.sending),
        (FIELDS[6], d.billable[0]),
        (FIELDS[7], d.billable[1]),
        (FIELDS[8], d.billable[2]),
        (FIELDS[9], d.billable[3]),
        (FIELDS[10], d.replied),
        (FIELDS[11], d.clicked),
    ]
}

fn sk_text(item: &Item) -> &str {
    item.get("SK").and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default()
}

/// A counter item as read: its shard, its version (every write adds one) and its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterItem {
    pub shard: u32,
    /// `None` for an item no count was added to (written some other way).
    pub version: Option<i64>,
    pub counts: Counters,
}

/// What adding a run of counted changes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tallied {
    Added,
    /// The run's mark was there: changes up to this sequence number were added before.
    Before(String),
}

impl Db {
    /// Adds counted changes to their campaigns' counters in one transaction with the run's mark
    /// (`TALLY#<first change's event id>`, kept a day like the stream's records, with the last
    /// change's sequence number): a run added once is never added again.
    pub async fn add_tallies(&self, run: &str, last: &str, deltas: &[(String, Counters)]) -> StoreResult<Tallied> {
        let expires = chrono::Utc::now().timestamp() + 2 * 24 * 3600;
        let mark = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("PK", s(format!("TALLY#{run}")))
            .item("SK", s("TALLY"))
            .item("last", s(last))
            .item("expires_at", n(expires))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(mark).build()];
        for (campaign, d) in deltas {
            items.push(self.counter_update(campaign, *d)?);
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(StoreError::from)
        {
            Ok(_) => Ok(Tallied::Added),
            Err(StoreError::ConditionFailed) => {
                let item = self.get_raw(format!("TALLY#{run}"), "TALLY").await?;
                let last = item.as_ref().and_then(|i| i.get("last")).and_then(|v| v.as_s().ok()).cloned();
                Ok(Tallied::Before(last.unwrap_or_default()))
            }
            Err(e) => Err(e),
        }
    }

    /// An update adding `d` to one of the campaign's counter items, for a transaction.
    pub(crate) fn counter_update(&self, campaign_id: &str, d: Counters) -> StoreResult<TransactWriteItem> {
        let shard = (uuid::Uuid::new_v4().as_u128() % COUNTER_SHARDS as u128) as u32;
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(campaign_pk(campaign_id)))
            .key("SK", s(counter_sk(shard)))
            .update_expression(ADD_ALL)
            .expression_attribute_values(":one", n(1));
        for (field, v) in values(d) {
            update = update.expression_attribute_values(format!(":{field}"), n(v));
        }
        let update = update.build().map_err(|e| StoreError::Dynamo(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A campaign with its counters: the campaign item and its counter items, read by key in
    /// one BatchGetItem (a query of the campaign's partition would walk its recipients too).
    pub async fn get_campaign(&self, id: &str) -> StoreResult<Option<Campaign>> {
        let key = |sk: String| HashMap::from([("PK".to_string(), s(campaign_pk(id))), ("SK".to_string(), s(sk))]);
        let mut keys = vec![key(CAMPAIGN_SK.to_string())];
        keys.extend((0..COUNTER_SHARDS).map(|i| key(counter_sk(i))));
        let mut campaign: Option<Campaign> = None;
        let mut sum = Counters::default();
        for item in self.batch_get(keys, None).await? {
            if sk_text(&item) == CAMPAIGN_SK {
                campaign = Some(serde_dynamo::from_item(item)?);
            } else {
                sum.add(counters(&item));
            }
        }
        Ok(campaign.map(|mut c| {
            c.count(sum);
            c
        }))
    }

    /// A campaign item just written (returned by the write), with its counters.
    pub(crate) async fn campaign_written(&self, item: Option<Item>) -> StoreResult<Campaign> {
        let c: Campaign = decode_one(item)?;
        self.with_counters(vec![c]).await?.pop().ok_or_else(|| StoreError::Corrupt("no campaign to count".into()))
    }

    /// Adds the sums of their counter items to campaigns read without them.
    pub(crate) async fn with_counters(&self, mut campaigns: Vec<Campaign>) -> StoreResult<Vec<Campaign>> {
        let keys: Vec<Item> = campaigns
            .iter()
            .flat_map(|c| {
                (0..COUNTER_SHARDS).map(|i| {
                    HashMap::from([("PK".to_string(), s(campaign_pk(&c.id))), ("SK".to_string(), s(counter_sk(i)))])
                })
            })
            .collect();
        let mut sums: HashMap<String, Counters> = HashMap::new();
        for item in self.batch_get(keys, None).await? {
            let pk = item.get("PK").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            sums.entry(pk).or_default().add(counters(&item));
        }
        for c in &mut campaigns {
            if let Some(sum) = sums.get(&campaign_pk(&c.id)) {
                c.count(*sum);
            }
        }
        Ok(campaigns)
    }

    /// The campaign's counter items as they are now (missing ones left out).
    pub async fn counter_items(&self, campaign_id: &str) -> StoreResult<Vec<CounterItem>> {
        let keys: Vec<Item> = (0..COUNTER_SHARDS)
            .map(|i| {
                HashMap::from([("PK".to_string(), s(campaign_pk(campaign_id))), ("SK".to_string(), s(counter_sk(i)))])
            })
            .collect();
        let items = self.batch_get(keys, None).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let shard = sk_text(item).strip_prefix(COUNTER_PREFIX)?.parse().ok()?;
                let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
                Some(CounterItem { shard, version, counts: counters(item) })
            })
            .collect())
    }

    /// Corrects the campaign's counters by `delta` (a recount found them off), on condition
    /// that no counter item changed since `seen` was read; [`StoreError::ConditionFailed`]
    /// otherwise (something was counted meanwhile: recount again later). The correction is
    /// added to counter item 0; the others are only checked.
    pub async fn correct_counters(&self, campaign_id: &str, seen: &[CounterItem], delta: Counters) -> StoreResult<()> {
        let pk = s(campaign_pk(campaign_id));
        let unchanged = |shard: u32| match seen.iter().find(|c| c.shard == shard) {
            Some(CounterItem { version: Some(v), .. }) => ("version = :v", Some(n(v))),
            Some(_) => ("attribute_not_exists(version)", None),
            None => ("attribute_not_exists(PK)", None),
        };
        let mut items = Vec::new();
        for shard in 1..COUNTER_SHARDS {
            let (condition, version) = unchanged(shard);
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key("PK", pk.clone())
                .key("SK", s(counter_sk(shard)))
                .condition_expression(condition)
                .set_expression_attribute_values(version.map(|v| HashMap::from([(":v".to_string(), v)])))
                .build()
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let (condition, version) = unchanged(0);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", pk.clone())
            .key("SK", s(counter_sk(0)))
            .condition_expression(condition)
            .update_expression(ADD_ALL)
            .expression_attribute_values(":one", n(1));
        if let Some(v) = version {
            update = update.expression_attribute_values(":v", v);
        }
        for (field, v) in values(delta) {
            update = update.expression_attribute_values(format!(":{field}"), n(v));
        }
        let update = update.build().map_err(|e| StoreError::Dynamo(e.to_string()))?;
        items.push(TransactWriteItem::builder().update(update).build());
        self.client.transact_write_items().set_transact_items(Some(items)).send().await?;
        Ok(())
    }
}
