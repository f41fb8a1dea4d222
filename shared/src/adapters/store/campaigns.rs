use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::keys::*;
use super::{Db, Index, Item, KeyQuery, Listed, Start, StoreError, StoreResult, applied, decode, n, s};
use crate::domain::campaign::{Campaign, CampaignStatus};

/// The index attributes of a campaign; they change with its status and account.
fn index_keys(c: &Campaign) -> Vec<(&'static str, String)> {
    let created = created_sk(&c.created_at, &c.id);
    vec![
        ("GSI1PK", ALL_CAMPAIGNS.into()),
        ("GSI1SK", created.clone()),
        ("GSI2PK", account_campaigns(&c.account_id)),
        ("GSI2SK", format!("{}#{created}", c.status.as_str())),
        ("GSI3PK", campaigns_in_status(c.status.as_str())),
        ("GSI3SK", created),
    ]
}

impl Db {
    pub async fn create_campaign(&self, c: &Campaign) -> StoreResult<()> {
        let mut keys = vec![("PK", campaign_pk(&c.id)), ("SK", CAMPAIGN_SK.to_string())];
        keys.extend(index_keys(c));
        let mut item = self.item(c, keys)?;
        item.insert("recipient_shards".into(), super::n(c.recipient_shards));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await?;
        Ok(())
    }

    /// A campaign's status alone, if it exists: a small read for senders, which check it often.
    pub async fn campaign_status(&self, id: &str) -> StoreResult<Option<CampaignStatus>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(campaign_pk(id)))
            .key("SK", s(CAMPAIGN_SK))
            .projection_expression("#status")
            .expression_attribute_names("#status", "status")
            .consistent_read(true)
            .send()
            .await?;
        let status = out.item.as_ref().and_then(|i| i.get("status")).and_then(|v| v.as_s().ok());
        Ok(status.and_then(|st| CampaignStatus::parse(st)))
    }

    pub async fn list_campaigns(
        &self,
        status: Option<CampaignStatus>,
        account_id: Option<&str>,
        start: Start,
        limit: u32,
    ) -> StoreResult<Listed<Campaign>> {
        let q = match (account_id, status) {
            (Some(a), Some(st)) => {
                KeyQuery::index(Index::Gsi2, account_campaigns(a)).with_prefix(format!("{}#", st.as_str()))
            }
            (Some(a), None) => KeyQuery::index(Index::Gsi2, account_campaigns(a)),
            (None, Some(st)) => KeyQuery::index(Index::Gsi3, campaigns_in_status(st.as_str())),
            (None, None) => KeyQuery::index(Index::Gsi1, ALL_CAMPAIGNS.into()),
        };
        let (total, (keys, next)) =
            tokio::try_join!(self.count(&q), self.list_across(std::slice::from_ref(&q), start, limit))?;
        let keys = keys.into_iter().map(super::table_key).collect();
        let items = decode(self.batch_get(keys, None).await?)?;
        Ok(Listed { items: self.with_counters(items).await?, total, next })
    }

    /// Stores the editable fields of a draft or scheduled campaign, and its status (a `PUT`
    /// that clears `scheduled_at` makes a scheduled campaign a draft again). Counters are left
    /// alone (an import may be adding recipients at the same moment). Refused when the campaign
    /// is no longer in the status `was` read, or (scheduled) no longer at the time it read.
    pub async fn update_editable(&self, c: &Campaign, was: &Campaign) -> StoreResult<Campaign> {
        let mut values: Vec<(&str, AttributeValue)> = vec![
            ("name", s(&c.name)),
            ("account_id", s(&c.account_id)),
            ("template_id", s(&c.template_id)),
            ("template_name", s(&c.template_name)),
            ("variable_mapping", serde_dynamo::to_attribute_value(&c.variable_mapping)?),
            ("header_media", serde_dynamo::to_attribute_value(&c.header_media)?),
            ("header_location", serde_dynamo::to_attribute_value(&c.header_location)?),
            ("scheduled_at", serde_dynamo::to_attribute_value(&c.scheduled_at)?),
            ("status", s(c.status.as_str())),
            ("updated_at", s(&c.updated_at)),
        ];
        let mut remove = vec!["schedule_error"];
        match &c.send_window {
            Some(w) => values.push(("send_window", serde_dynamo::to_attribute_value(w)?)),
            None => remove.push("send_window"),
        }
        values.extend(index_keys(c).into_iter().map(|(k, v)| (k, s(v))));
        let set: Vec<String> = values.iter().enumerate().map(|(i, _)| format!("#f{i} = :v{i}")).collect();
        let mut condition = "#status = :was AND attribute_not_exists(deleting)".to_string();
        if was.status == CampaignStatus::Scheduled {
            condition.push_str(" AND scheduled_at = :was_at");
        }
        let mut req = self
            .update(campaign_pk(&c.id), CAMPAIGN_SK)
            .update_expression(format!("SET {} REMOVE {}", set.join(", "), remove.join(", ")))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":was", s(was.status.as_str()))
            .return_values(ReturnValue::AllNew);
        if was.status == CampaignStatus::Scheduled {
            req = req.expression_attribute_values(":was_at", s(was.scheduled_at.as_deref().unwrap_or_default()));
        }
        for (i, (k, v)) in values.into_iter().enumerate() {
            req = req.expression_attribute_names(format!("#f{i}"), k).expression_attribute_values(format!(":v{i}"), v);
        }
        let out = req.send().await?;
        decode_one(out.attributes)
    }

    /// Marks a campaign as being deleted, unless it is sending: nothing can start it from then
    /// on, and it leaves the listings (its index entries go, but for the partition of campaigns
    /// being deleted, where the reconciler finds those a lost job left behind). Returns the
    /// campaign as it was marked.
    pub async fn mark_deleting(&self, id: &str, now: &str, now_unix: i64) -> StoreResult<Campaign> {
        let out = self
            .update(campaign_pk(id), CAMPAIGN_SK)
            .update_expression(
                "SET deleting = :now, deleting_noted = :unix, GSI3PK = :deleting \
                 REMOVE GSI1PK, GSI1SK, GSI2PK, GSI2SK",
            )
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(deleting) AND #status <> :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CampaignStatus::Sending.as_str()))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":unix", n(now_unix))
            .expression_attribute_values(":deleting", s(DELETING_CAMPAIGNS))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        decode_one(out.attributes)
    }

    /// Deletes up to about `budget` of a deleted campaign's recipients, shard by shard; returns
    /// how many it deleted (0: none is left). Nothing to remember between steps: what is
    /// deleted is gone from the next query.
    pub async fn delete_recipients(&self, campaign: &Campaign, budget: usize) -> StoreResult<usize> {
        let mut deleted = 0;
        for shard in recipient_shards(campaign.recipient_shards) {
            let pk = recipient_pk(&campaign.id, shard);
            while deleted < budget {
                let out = self
                    .query(&KeyQuery::table(pk.clone(), RECIPIENT_PREFIX))
                    .projection_expression("PK, SK")
                    .consistent_read(true)
                    .limit((budget - deleted).min(1000) as i32)
                    .send()
                    .await?;
                let keys: Vec<Item> = out.items.unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                deleted += self.delete_keys(keys).await?;
                if out.last_evaluated_key.is_none() {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Notes that the deletion of a campaign made progress (the reconciler queues it again
    /// when it stops making any).
    pub async fn note_deleting(&self, id: &str, now_unix: i64) -> StoreResult<()> {
        let req = self.update(campaign_pk(id), CAMPAIGN_SK).update_expression("SET deleting_noted = :unix");
        let req =
            req.condition_expression("attribute_exists(deleting)").expression_attribute_values(":unix", n(now_unix));
        applied(req.send().await).map(|_| ())
    }

    /// Deleted campaigns whose deletion made no progress since `before` (unix seconds).
    pub async fn stalled_deletions(&self, before: i64) -> StoreResult<Vec<Campaign>> {
        let keys = self.query_keys(&KeyQuery::index(Index::Gsi3, DELETING_CAMPAIGNS.into())).await?;
        let items = self.batch_get(keys, None).await?;
        let noted = |i: &Item| i.get("deleting_noted").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        decode(items.into_iter().filter(|i| noted(i).unwrap_or(0) < before).collect())
    }

    /// Deletes what is left of a deleted campaign once its recipients are gone: its counters
    /// and other items under its key, the campaign item last, so an interrupted delete can be
    /// repeated until it completes.
    pub async fn delete_campaign(&self, id: &str) -> StoreResult<()> {
        let mut items = self.query_keys(&KeyQuery::table(campaign_pk(id), "")).await?;
        items.retain(|k| k.get("SK").and_then(|v| v.as_s().ok()).map(String::as_str) != Some(CAMPAIGN_SK));
        self.delete_keys(items).await?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("PK", s(campaign_pk(id)))
            .key("SK", s(CAMPAIGN_SK))
            .send()
            .await?;
        Ok(())
    }
}

pub(crate) fn decode_one<T: serde::de::DeserializeOwned>(item: Option<Item>) -> StoreResult<T> {
    let item = item.ok_or_else(|| StoreError::Corrupt("update returned no item".into()))?;
    serde_dynamo::from_item(item).map_err(StoreError::from)
}
