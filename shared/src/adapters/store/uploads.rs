//! Uploaded recipient files: an item per upload beside its campaign (`CAMPAIGN#<id>` /
//! `UPLOAD#<upload>`) holding its status, counts and checkpoint. Every write of it is
//! conditional on the `version` read, so that two invocations of one import (a notice
//! delivered twice) never both record a chunk; and a chunk's count is added to the campaign's
//! `total_recipients` in the same transaction as the checkpoint that says it was imported.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::keys::*;
use super::recipients::IMPORT_LOCK_SECONDS;
use super::{Db, StoreError, StoreResult, n, s};
use crate::domain::campaign::CampaignStatus;
use crate::domain::upload::Upload;

pub const UPLOAD_PREFIX: &str = "UPLOAD#";

fn upload_sk(upload_id: &str) -> String {
    format!("{UPLOAD_PREFIX}{upload_id}")
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> StoreResult<T> {
    r.map_err(|e| StoreError::Dynamo(e.to_string()))
}

impl Db {
    pub async fn create_upload(&self, u: &Upload) -> StoreResult<()> {
        let req = self.client.put_item().table_name(&self.table).set_item(Some(self.upload_item(u)?));
        req.condition_expression("attribute_not_exists(PK)").send().await?;
        Ok(())
    }

    pub async fn get_upload(&self, campaign_id: &str, upload_id: &str) -> StoreResult<Option<Upload>> {
        self.get(campaign_pk(campaign_id), &upload_sk(upload_id)).await
    }

    fn upload_item(&self, u: &Upload) -> StoreResult<super::Item> {
        self.item(u, vec![("PK", campaign_pk(&u.campaign_id)), ("SK", upload_sk(&u.upload_id))])
    }

    /// The upload's item, written if it is still at the version before `u.version`.
    fn put_upload(&self, u: &Upload) -> StoreResult<Put> {
        built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.upload_item(u)?))
                .condition_expression("version = :was")
                .expression_attribute_values(":was", n(u.version.saturating_sub(1)))
                .build(),
        )
    }

    /// Stores the upload (its version bumped by the caller) unless another write came first
    /// ([`StoreError::ConditionFailed`]).
    pub async fn save_upload(&self, u: &Upload) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.upload_item(u)?))
            .condition_expression("version = :was")
            .expression_attribute_values(":was", n(u.version.saturating_sub(1)))
            .send()
            .await?;
        Ok(())
    }

    /// Takes (or renews) the campaign's import lock for the upload's `lock_token` and stores
    /// the upload, in one transaction: refused ([`StoreError::ConditionFailed`]) when the
    /// campaign no longer takes imports, another import holds the lock, or the upload changed.
    pub async fn claim_upload(&self, u: &Upload, now_unix: i64) -> StoreResult<()> {
        let token = u.lock_token.clone().unwrap_or_default();
        let lock = built(
            Update::builder()
                .table_name(&self.table)
                .key("PK", s(campaign_pk(&u.campaign_id)))
                .key("SK", s(CAMPAIGN_SK))
                .update_expression("SET import_lock = :token, import_lock_until = :until")
                .condition_expression(
                    "attribute_exists(PK) AND attribute_not_exists(deleting) AND #status IN (:draft, :scheduled) \
                     AND (attribute_not_exists(import_lock_until) OR import_lock_until < :now OR import_lock = :token)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":draft", s(CampaignStatus::Draft.as_str()))
                .expression_attribute_values(":scheduled", s(CampaignStatus::Scheduled.as_str()))
                .expression_attribute_values(":token", s(token))
                .expression_attribute_values(":until", n(now_unix + IMPORT_LOCK_SECONDS))
                .expression_attribute_values(":now", n(now_unix))
                .build(),
        )?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(lock).build())
            .transact_items(TransactWriteItem::builder().put(self.put_upload(u)?).build())
            .send()
            .await?;
        Ok(())
    }

    /// Records a chunk: `added` recipients onto the campaign's `total_recipients` and the
    /// upload's new checkpoint, in one transaction, on condition the upload still holds the
    /// import lock (renewed, or released with `release`) and was not changed meanwhile.
    pub async fn record_upload_chunk(&self, u: &Upload, added: u64, now_unix: i64, release: bool) -> StoreResult<()> {
        let token = u.lock_token.clone().unwrap_or_default();
        let mut campaign = Update::builder()
            .table_name(&self.table)
            .key("PK", s(campaign_pk(&u.campaign_id)))
            .key("SK", s(CAMPAIGN_SK))
            .condition_expression("import_lock = :token")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":added", n(added))
            .expression_attribute_values(":now", s(u.updated_at.as_str()));
        campaign = if release {
            campaign.update_expression(
                "ADD total_recipients :added SET updated_at = :now REMOVE import_lock, import_lock_until",
            )
        } else {
            campaign
                .update_expression("ADD total_recipients :added SET updated_at = :now, import_lock_until = :until")
                .expression_attribute_values(":until", n(now_unix + IMPORT_LOCK_SECONDS))
        };
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(built(campaign.build())?).build())
            .transact_items(TransactWriteItem::builder().put(self.put_upload(u)?).build())
            .send()
            .await?;
        Ok(())
    }

    /// Whether any number ever opted out of the account's marketing messages (one key-only
    /// read of at most one item): when none has, an import need not look its numbers up.
    pub async fn account_has_opt_outs(&self, account_id: &str) -> StoreResult<bool> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(account_pk(account_id)))
            .expression_attribute_values(":prefix", s(opt_out_sk("")))
            .projection_expression("PK")
            .limit(1)
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.count > 0)
    }
}
