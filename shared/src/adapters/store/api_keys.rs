//! API keys: an item per key under the key's SHA-256 (what a request is checked against, one
//! consistent `GetItem`), and a pointer from the key's id to that hash (what revoking by id
//! reads). Both are written and deleted together.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::keys::*;
use super::{Db, Index, KeyQuery, Page, StoreError, StoreResult, applied, s};
use crate::domain::api_key::ApiKey;

impl Db {
    /// Stores a new key; `ConditionFailed` when a key with the same hash exists already.
    pub async fn create_api_key(&self, key: &ApiKey, hash: &str) -> StoreResult<()> {
        let record = self.item(
            key,
            vec![
                ("PK", api_key_pk(hash)),
                ("SK", API_KEY_SK.into()),
                ("GSI1PK", ALL_API_KEYS.into()),
                ("GSI1SK", created_sk(&key.created_at, &key.id)),
            ],
        )?;
        let put = |item: super::Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| StoreError::Dynamo(e.to_string()))
        };
        let pointer = [("PK", api_key_id_pk(&key.id)), ("SK", API_KEY_ID_SK.into()), ("key_hash", hash.into())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), s(v)))
            .collect();
        self.client.transact_write_items().transact_items(put(record)?).transact_items(put(pointer)?).send().await?;
        Ok(())
    }

    /// The key whose SHA-256 is `hash` (a consistent read: a revoked key stops at once).
    pub async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        self.get(api_key_pk(hash), API_KEY_SK).await
    }

    /// Records a use of the key, unless one after `stale_before` is recorded already (so a
    /// busy key is written about once a minute, not on every request). Never brings back a
    /// revoked key.
    pub async fn touch_api_key(&self, hash: &str, now: &str, stale_before: &str) -> StoreResult<()> {
        let result = self
            .update(api_key_pk(hash), API_KEY_SK)
            .update_expression("SET last_used_at = :now")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(last_used_at) OR last_used_at < :stale)",
            )
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":stale", s(stale_before))
            .send()
            .await;
        applied(result).map(|_| ())
    }

    /// The keys, newest first.
    pub async fn list_api_keys(&self, page: u32, limit: u32) -> StoreResult<Page<ApiKey>> {
        self.list_indexed(&KeyQuery::index(Index::Gsi1, ALL_API_KEYS.into()), page, limit).await
    }

    /// Deletes the key with this id; `false` when there is none.
    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        #[derive(serde::Deserialize)]
        struct Pointer {
            key_hash: String,
        }
        let Some(pointer) = self.get::<Pointer>(api_key_id_pk(id), API_KEY_ID_SK).await? else { return Ok(false) };
        let delete = |pk: String, sk: &str, condition: Option<&str>| {
            Delete::builder()
                .table_name(&self.table)
                .key("PK", s(pk))
                .key("SK", s(sk))
                .set_condition_expression(condition.map(str::to_string))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(|e| StoreError::Dynamo(e.to_string()))
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(delete(api_key_id_pk(id), API_KEY_ID_SK, Some("attribute_exists(PK)"))?)
            .transact_items(delete(api_key_pk(&pointer.key_hash), API_KEY_SK, None)?)
            .send()
            .await;
        // Revoked by someone else meanwhile.
        applied(result)
    }
}
