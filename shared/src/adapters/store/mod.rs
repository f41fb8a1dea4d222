//! The DynamoDB adapter: one table, keys described in `docs/dynamodb.md`.
//!
//! Handlers talk to [`Db`]; each entity's operations live in their own module. The generic
//! pieces here (page-number pagination over a query, batched reads and writes with retries of
//! unprocessed items) are written once.

mod accounts;
mod api_keys;
mod campaigns;
mod counters;
mod daily_cap;
mod delivery;
mod exports;
mod idempotency;
pub mod keys;
mod listing;
mod partiql;
mod recipients;
pub mod sending;
mod templates;
mod uploads;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Select, WriteRequest};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::retry;

pub use accounts::AccountWrite;
pub use counters::{COUNTER_SHARDS, CounterItem, Tallied};
pub use delivery::{DeliveryChange, RECIPIENTS_PER_TRANSACTION};
pub use idempotency::Claimed;
pub use listing::{Listed, Position, Start};
pub use recipients::ImportLock;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write found the item in another state than expected.
    #[error("condition failed")]
    ConditionFailed,
    /// Another transaction was changing the same items at the same time; try again.
    #[error("transaction conflict")]
    Conflict,
    #[error("DynamoDB: {0}")]
    Dynamo(String),
    #[error("stored item cannot be read: {0}")]
    Corrupt(String),
    /// A listing's cursor that does not belong to it.
    #[error("the cursor does not belong to this listing")]
    BadCursor,
}

impl<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: std::fmt::Debug> From<SdkError<E, R>>
    for StoreError
{
    fn from(e: SdkError<E, R>) -> Self {
        let code = e.as_service_error().and_then(|s| s.code()).unwrap_or_default();
        if code == "ConditionalCheckFailedException" {
            return StoreError::ConditionFailed;
        }
        if code == "TransactionCanceledException" {
            let msg = e.as_service_error().and_then(|s| s.message()).unwrap_or_default();
            if msg.contains("ConditionalCheckFailed") {
                return StoreError::ConditionFailed;
            }
            if msg.contains("TransactionConflict") {
                return StoreError::Conflict;
            }
        }
        if code == "TransactionConflictException" {
            return StoreError::Conflict;
        }
        StoreError::Dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
    }
}

impl From<serde_dynamo::Error> for StoreError {
    fn from(e: serde_dynamo::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether a conditional write took place: a failed condition is an answer here, not an error.
pub(crate) fn applied<T, E>(result: Result<T, E>) -> StoreResult<bool>
where
    StoreError: From<E>,
{
    match result.map_err(StoreError::from) {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// How many batch requests run at once during imports and deletes.
const BATCH_CONCURRENCY: usize = 16;

#[derive(Clone, Debug)]
pub struct Db {
    client: Client,
    table: String,
    /// How long the account pace's writes take to come back, smoothed (microseconds): send
    /// slots start at least twice that far ahead, so that they are still ahead when the answer
    /// arrives, however slow the store is.
    pace_latency_us: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A page of a listing and the number of items in the whole listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The table's global secondary indexes (docs/dynamodb.md says what each holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Gsi1,
    Gsi2,
    Gsi3,
}

impl Index {
    pub fn name(self) -> &'static str {
        match self {
            Index::Gsi1 => "GSI1",
            Index::Gsi2 => "GSI2",
            Index::Gsi3 => "GSI3",
        }
    }

    /// The index's partition and sort key attributes.
    fn key_attributes(self) -> (&'static str, &'static str) {
        match self {
            Index::Gsi1 => ("GSI1PK", "GSI1SK"),
            Index::Gsi2 => ("GSI2PK", "GSI2SK"),
            Index::Gsi3 => ("GSI3PK", "GSI3SK"),
        }
    }
}

/// A key-condition query on the table or one of its indexes: `pk = value` and optionally
/// `begins_with(sk, prefix)`; optionally only the items in a `status` (a filter: DynamoDB
/// reads the others too, and returns only those).
#[derive(Debug, Clone)]
pub struct KeyQuery {
    pub index: Option<Index>,
    pub pk: (&'static str, String),
    pub sk_prefix: Option<(&'static str, String)>,
    pub newest_first: bool,
    pub status: Option<&'static str>,
}

impl KeyQuery {
    pub fn index(index: Index, pk: String) -> Self {
        let (pk_attr, sk_attr) = index.key_attributes();
        KeyQuery {
            index: Some(index),
            pk: (pk_attr, pk),
            sk_prefix: Some((sk_attr, String::new())),
            newest_first: true,
            status: None,
        }
    }

    pub fn table(pk: String, sk_prefix: &str) -> Self {
        KeyQuery {
            index: None,
            pk: ("PK", pk),
            sk_prefix: Some(("SK", sk_prefix.to_string())),
            newest_first: false,
            status: None,
        }
    }

    pub fn in_status(mut self, status: &'static str) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_prefix(mut self, prefix: String) -> Self {
        if let Some((_, p)) = self.sk_prefix.as_mut() {
            *p = prefix;
        }
        self
    }
}

impl Db {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Db { client, table: table.into(), pace_latency_us: Default::default() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// An `UpdateItem` on one item, to which the caller adds its expressions.
    pub(crate) fn update(
        &self,
        pk: impl Into<String>,
        sk: impl Into<String>,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("PK", s(pk)).key("SK", s(sk))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, pk: String, sk: &str) -> StoreResult<Option<T>> {
        self.get_raw(pk, sk).await?.map(|i| serde_dynamo::from_item(i).map_err(StoreError::from)).transpose()
    }

    /// An item as stored (consistent read).
    pub(crate) async fn get_raw(&self, pk: String, sk: &str) -> StoreResult<Option<Item>> {
        let req = self.client.get_item().table_name(&self.table).key("PK", s(pk)).key("SK", s(sk));
        Ok(req.consistent_read(true).send().await?.item)
    }

    /// Serialises `value` and adds the key attributes.
    pub(crate) fn item<T: Serialize>(&self, value: &T, keys: Vec<(&str, String)>) -> StoreResult<Item> {
        let mut item: Item = serde_dynamo::to_item(value)?;
        for (k, v) in keys {
            item.insert(k.to_string(), s(v));
        }
        Ok(item)
    }

    fn query(&self, q: &KeyQuery) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut b = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(q.index.map(|i| i.name().to_string()))
            .scan_index_forward(!q.newest_first)
            .expression_attribute_names("#pk", q.pk.0)
            .expression_attribute_values(":pk", s(q.pk.1.clone()));
        match &q.sk_prefix {
            Some((attr, prefix)) if !prefix.is_empty() => {
                b = b
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", *attr)
                    .expression_attribute_values(":prefix", s(prefix.clone()));
            }
            _ => b = b.key_condition_expression("#pk = :pk"),
        }
        if let Some(status) = q.status {
            b = b
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status));
        }
        b
    }

    /// Counts the items a query matches, page by page on the server (nothing is transferred).
    pub(crate) async fn count(&self, q: &KeyQuery) -> StoreResult<u64> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self.query(q).select(Select::Count).set_exclusive_start_key(start).send().await?;
            total += out.count as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    /// The items (or, on a keys-only index, the keys) of page `page` of size `limit`. Earlier
    /// pages are skipped with counting queries, so no item of them crosses the network.
    pub(crate) async fn query_page(&self, q: &KeyQuery, page: u32, limit: u32) -> StoreResult<Vec<Item>> {
        let mut skip = (page as u64 - 1) * limit as u64;
        let mut start = None;
        while skip > 0 {
            let step = skip.min(i32::MAX as u64) as i32;
            let out = self.query(q).select(Select::Count).limit(step).set_exclusive_start_key(start).send().await?;
            skip -= (out.count as u64).min(skip);
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(Vec::new());
            }
        }
        let mut items = Vec::with_capacity(limit as usize);
        loop {
            let want = limit as usize - items.len();
            let out = self.query(q).limit(want as i32).set_exclusive_start_key(start).send().await?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() || items.len() >= limit as usize {
                return Ok(items);
            }
        }
    }

    /// Every key a query matches (`PK`/`SK` of the table's items), for deletes.
    pub(crate) async fn query_keys(&self, q: &KeyQuery) -> StoreResult<Vec<Item>> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self.query(q).projection_expression("PK, SK").set_exclusive_start_key(start).send().await?;
            keys.extend(out.items.unwrap_or_default().into_iter().map(table_key));
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Reads items by key in batches of 100 and returns them in the order of `keys`.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> StoreResult<Vec<Item>> {
        let chunks: Vec<Vec<Item>> = keys.chunks(100).map(<[Item]>::to_vec).collect();
        let found: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.batch_get_chunk(chunk, projection))
            .buffered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut by_key: HashMap<(String, String), Item> =
            found.into_iter().flatten().map(|i| (key_pair(&i), i)).collect();
        Ok(keys.iter().filter_map(|k| by_key.remove(&key_pair(k))).collect())
    }

    async fn batch_get_chunk(&self, mut keys: Vec<Item>, projection: Option<&str>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        let mut attempt = 0;
        while !keys.is_empty() {
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .set_projection_expression(projection.map(str::to_string))
                .build()
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
            let out = self.client.batch_get_item().request_items(&self.table, ka).send().await?;
            if let Some(mut r) = out.responses {
                items.extend(r.remove(&self.table).unwrap_or_default());
            }
            keys = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|ka| ka.keys).unwrap_or_default();
            attempt += 1;
            wait_for_unprocessed(attempt, !keys.is_empty()).await?;
        }
        Ok(items)
    }

    /// Writes (puts or deletes) in batches of 25, several batches at once. Returns how many
    /// requests were written; on an error, how many had been written before it.
    pub(crate) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<usize, (usize, StoreError)> {
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[WriteRequest]>::to_vec).collect();
        let mut results =
            stream::iter(chunks).map(|chunk| self.batch_write_chunk(chunk)).buffer_unordered(BATCH_CONCURRENCY);
        let mut written = 0;
        let mut first_error = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(n) => written += n,
                Err((n, e)) => {
                    written += n;
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(written),
            Some(e) => Err((written, e)),
        }
    }

    async fn batch_write_chunk(&self, mut requests: Vec<WriteRequest>) -> Result<usize, (usize, StoreError)> {
        let total = requests.len();
        let mut attempt = 0;
        while !requests.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests.clone())
                .send()
                .await
                .map_err(|e| (total - requests.len(), StoreError::from(e)))?;
            requests = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
            attempt += 1;
            wait_for_unprocessed(attempt, !requests.is_empty()).await.map_err(|e| (total - requests.len(), e))?;
        }
        Ok(total)
    }

    pub(crate) async fn delete_keys(&self, keys: Vec<Item>) -> StoreResult<usize> {
        let requests = keys
            .into_iter()
            .map(|k| {
                aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| StoreError::Dynamo(e.to_string()))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_write(requests).await.map_err(|(_, e)| e)
    }
}

/// Waits before trying again after `attempt` failures ([`crate::domain::retry::backoff`]).
pub async fn wait_before_retry(attempt: u32) {
    tokio::time::sleep(retry::backoff(attempt, retry::random_unit())).await
}

/// Waits before retrying unprocessed batch items (DynamoDB throttling); gives up after a while.
async fn wait_for_unprocessed(attempt: u32, more: bool) -> StoreResult<()> {
    if !more {
        return Ok(());
    }
    if attempt > 10 {
        return Err(StoreError::Dynamo("batch items stayed unprocessed after 10 attempts".into()));
    }
    wait_before_retry(attempt).await;
    Ok(())
}

/// A string attribute of an item.
pub(crate) fn text(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn key_pair(item: &Item) -> (String, String) {
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    (get("PK"), get("SK"))
}

/// The table key of an item (an index query also returns the index's own key attributes).
pub(crate) fn table_key(mut item: Item) -> Item {
    item.retain(|k, _| k == "PK" || k == "SK");
    item
}

pub(crate) fn decode<T: DeserializeOwned>(items: Vec<Item>) -> StoreResult<Vec<T>> {
    items.into_iter().map(|i| serde_dynamo::from_item(i).map_err(StoreError::from)).collect()
}
