use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::keys::*;
use super::{Db, Index, Item, KeyQuery, Page, StoreError, StoreResult, s};
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
        let item = self.item(c, keys)?;
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
        page: u32,
        limit: u32,
    ) -> StoreResult<Page<Campaign>> {
        let q = match (account_id, status) {
            (Some(a), Some(st)) => {
                KeyQuery::index(Index::Gsi2, account_campaigns(a)).with_prefix(format!("{}#", st.as_str()))
            }
            (Some(a), None) => KeyQuery::index(Index::Gsi2, account_campaigns(a)),
            (None, Some(st)) => KeyQuery::index(Index::Gsi3, campaigns_in_status(st.as_str())),
            (None, None) => KeyQuery::index(Index::Gsi1, ALL_CAMPAIGNS.into()),
        };
        let page = self.list_indexed(&q, page, limit).await?;
        Ok(Page { items: self.with_counters(page.items).await?, total: page.total })
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
            ("scheduled_at", serde_dynamo::to_attribute_value(&c.scheduled_at)?),
            ("status", s(c.status.as_str())),
            ("updated_at", s(&c.updated_at)),
        ];
        values.extend(index_keys(c).into_iter().map(|(k, v)| (k, s(v))));
        let set: Vec<String> = values.iter().enumerate().map(|(i, _)| format!("#f{i} = :v{i}")).collect();
        let mut condition = "#status = :was AND attribute_not_exists(deleting)".to_string();
        if was.status == CampaignStatus::Scheduled {
            condition.push_str(" AND scheduled_at = :was_at");
        }
        let mut req = self
            .update(campaign_pk(&c.id), CAMPAIGN_SK)
            .update_expression(format!("SET {} REMOVE schedule_error", set.join(", ")))
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

    /// Marks a campaign as being deleted, unless it is sending; nothing can start it from then
    /// on. Returns the campaign as it was marked.
    pub async fn mark_deleting(&self, id: &str, now: &str) -> StoreResult<Campaign> {
        let out = self
            .update(campaign_pk(id), CAMPAIGN_SK)
            .update_expression("SET deleting = :now")
            .condition_expression("attribute_exists(PK) AND #status <> :sending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(CampaignStatus::Sending.as_str()))
            .expression_attribute_values(":now", s(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        decode_one(out.attributes)
    }

    /// Deletes the recipients (and counters) first and the campaign last, so an interrupted
    /// delete can be repeated until it completes.
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
