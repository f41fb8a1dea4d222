use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, ReturnValue, WriteRequest};

use super::campaigns::decode_one;
use super::keys::*;
use super::{Db, Index, Item, KeyQuery, Listed, Start, StoreError, StoreResult, decode, n, s, text};
use crate::domain::Timestamp;
use crate::domain::campaign::{Campaign, CampaignStatus};
use crate::domain::import::Accepted;
use crate::domain::phone::Phone;
use crate::domain::recipient::{Recipient, RecipientStatus, shard_of};

/// One import at a time per campaign keeps `total_recipients` exact: the holder counts what it
/// added and releases the lock with the count in one write.
#[derive(Debug)]
pub struct ImportLock {
    pub campaign: Campaign,
    token: String,
}

/// An import lock left behind by a crashed import expires after this many seconds.
pub const IMPORT_LOCK_SECONDS: i64 = 120;

/// The attribute naming the upload chunk that wrote a recipient.
const IMPORT_TAG: &str = "import_tag";

impl Db {
    /// Takes the campaign's import lock if the campaign takes imports and no other import runs.
    /// On [`StoreError::ConditionFailed`] the caller reads the campaign to say which it was.
    pub async fn lock_import(&self, id: &str, now_unix: i64) -> StoreResult<ImportLock> {
        let token: String = crate::domain::id::Id::generate().into();
        let out = self
            .update(campaign_pk(id), CAMPAIGN_SK)
            .update_expression("SET import_lock = :token, import_lock_until = :until")
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(deleting) AND #status IN (:draft, :scheduled) \
                 AND (attribute_not_exists(import_lock_until) OR import_lock_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":draft", s(CampaignStatus::Draft.as_str()))
            .expression_attribute_values(":scheduled", s(CampaignStatus::Scheduled.as_str()))
            .expression_attribute_values(":token", s(&token))
            .expression_attribute_values(":until", n(now_unix + IMPORT_LOCK_SECONDS))
            .expression_attribute_values(":now", n(now_unix))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        Ok(ImportLock { campaign: decode_one(out.attributes)?, token })
    }

    /// Adds what the import wrote to `total_recipients` and releases the lock.
    pub async fn finish_import(&self, lock: &ImportLock, added: usize, now: &str) -> StoreResult<Campaign> {
        let out = self
            .update(campaign_pk(&lock.campaign.id), CAMPAIGN_SK)
            .update_expression(
                "ADD total_recipients :added SET updated_at = :now REMOVE import_lock, import_lock_until",
            )
            .condition_expression("import_lock = :token")
            .expression_attribute_values(":added", n(added))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":token", s(&lock.token))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        decode_one(out.attributes)
    }

    /// The numbers among `phones` that the campaign already holds, looked up by key in
    /// parallel batches (reading the whole campaign instead would be sequential pages).
    pub async fn existing_phones(
        &self,
        campaign: &Campaign,
        phones: &[&str],
    ) -> StoreResult<HashMap<Phone, Option<String>>> {
        let phone_of = |item: &Item| {
            let phone = Phone::stored(item.get("SK")?.as_s().ok()?.strip_prefix(RECIPIENT_PREFIX)?.to_string());
            Some((phone, text(item, IMPORT_TAG)))
        };
        let keys = phones.iter().map(|p| {
            let pk = recipient_pk(&campaign.id, shard_of(campaign.recipient_shards, p));
            [("PK".to_string(), s(pk)), ("SK".to_string(), s(recipient_sk(p)))].into()
        });
        let found = self.batch_get(keys.collect(), Some("PK, SK, import_tag")).await?;
        Ok(found.iter().filter_map(phone_of).collect())
    }

    /// Writes new pending recipients, each with the import's `tag` if any (see
    /// [`crate::domain::upload::Upload::chunk_tag`]). Returns how many were written (also on
    /// error).
    pub async fn put_recipients(
        &self,
        campaign: &Campaign,
        accepted: Vec<Accepted>,
        now: &Timestamp,
        tag: Option<&str>,
    ) -> Result<usize, (usize, StoreError)> {
        let pending = RecipientStatus::Pending.as_str();
        let mut requests = Vec::with_capacity(accepted.len());
        for a in accepted {
            let r = Recipient::pending(&campaign.id, campaign.recipient_shards, a.phone, a.fields, now);
            let mut keys = vec![
                ("PK", recipient_pk(&campaign.id, r.shard)),
                ("SK", recipient_sk(&r.phone_number)),
                ("GSI2PK", recipients_in_status(&campaign.id, pending, r.shard)),
                ("GSI2SK", r.phone_number.to_string()),
            ];
            if let Some(tag) = tag {
                keys.push((IMPORT_TAG, tag.to_string()));
            }
            let item = self.item(&r, keys).map_err(|e| (0, e))?;
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| (0, StoreError::Dynamo(e.to_string())))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(requests).await
    }

    /// A page of the campaign's recipients, all or those in one status, shard after shard,
    /// in number order within a shard. The status index holds the recipients not sent yet
    /// (`pending`, with those being sent at this instant, which show `sending`) and the failed
    /// ones: those filters read only their index partitions. The other statuses are found by a
    /// filter over the campaign's recipients. Every total comes from the campaign's counters.
    pub async fn list_recipients(
        &self,
        campaign: &Campaign,
        status: Option<RecipientStatus>,
        start: Start,
        limit: u32,
    ) -> StoreResult<Listed<Recipient>> {
        use RecipientStatus::*;
        let shards = recipient_shards(campaign.recipient_shards);
        let by_key = |k: Option<u32>| KeyQuery::table(recipient_pk(&campaign.id, k), RECIPIENT_PREFIX);
        let queries: Vec<KeyQuery> = match status {
            None => shards.into_iter().map(by_key).collect(),
            Some(st @ (Pending | Failed)) => shards
                .into_iter()
                .map(|k| {
                    let mut q = KeyQuery::index(Index::Gsi2, recipients_in_status(&campaign.id, st.as_str(), k));
                    q.newest_first = false;
                    q
                })
                .collect(),
            Some(st) => shards.into_iter().map(|k| by_key(k).in_status(st.as_str())).collect(),
        };
        let (mut items, next) = self.list_across(&queries, start, limit).await?;
        if matches!(status, Some(Pending | Failed)) {
            // The index holds keys only.
            items = self.batch_get(items.into_iter().map(super::table_key).collect(), None).await?;
        }
        Ok(Listed { items: decode(items)?, total: campaign.counted_in(status), next })
    }
}
