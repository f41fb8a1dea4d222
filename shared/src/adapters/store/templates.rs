use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::keys::*;
use super::{Db, Index, KeyQuery, Page, StoreError, StoreResult, s};
use crate::domain::template::{Template, TemplateStatus};

impl Db {
    /// Stores a template; a second template with the same name and language in the same
    /// account is refused with [`StoreError::ConditionFailed`].
    pub async fn create_template(&self, t: &Template) -> StoreResult<()> {
        let item = self.item(
            t,
            vec![
                ("PK", template_pk(&t.id)),
                ("SK", TEMPLATE_SK.into()),
                ("GSI1PK", ALL_TEMPLATES.into()),
                ("GSI1SK", created_sk(&t.created_at, &t.id)),
                ("GSI2PK", account_templates(&t.account_id)),
                ("GSI2SK", created_sk(&t.created_at, &t.id)),
            ],
        )?;
        let err = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo(e.to_string());
        let template = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(err)?;
        let guard = Put::builder()
            .table_name(&self.table)
            .item("PK", s(account_pk(&t.account_id)))
            .item("SK", s(template_name_sk(&t.name, &t.language)))
            .item("template_id", s(&t.id))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(err)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(template).build())
            .transact_items(TransactWriteItem::builder().put(guard).build())
            .send()
            .await?;
        Ok(())
    }

    /// The account's template of this name and language (through the item that keeps the
    /// pair unique).
    pub async fn template_named(&self, account_id: &str, name: &str, language: &str) -> StoreResult<Option<Template>> {
        let guard = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(account_pk(account_id)))
            .key("SK", s(template_name_sk(name, language)))
            .send()
            .await?;
        match guard.item.as_ref().and_then(|i| super::text(i, "template_id")) {
            Some(id) => self.get_template(&id).await,
            None => Ok(None),
        }
    }

    /// Records what Meta said of a template: its new status and why, or its quality score.
    pub async fn set_template_health(
        &self,
        id: &str,
        status: Option<TemplateStatus>,
        reason: Option<&str>,
        quality: Option<&str>,
    ) -> StoreResult<()> {
        let mut set = vec![];
        let mut req = self.update(template_pk(id), TEMPLATE_SK).condition_expression("attribute_exists(PK)");
        if let Some(status) = status {
            set.push("#status = :status, status_reason = :reason");
            let status = serde_json::to_value(status).map_err(|e| StoreError::Dynamo(e.to_string()))?;
            req = req
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str().unwrap_or_default()))
                .expression_attribute_values(":reason", s(reason.unwrap_or_default()));
        }
        if let Some(quality) = quality {
            set.push("quality_score = :quality");
            req = req.expression_attribute_values(":quality", s(quality));
        }
        if set.is_empty() {
            return Ok(());
        }
        req.update_expression(format!("SET {}", set.join(", "))).send().await?;
        Ok(())
    }

    pub async fn get_template(&self, id: &str) -> StoreResult<Option<Template>> {
        self.get(template_pk(id), TEMPLATE_SK).await
    }

    pub async fn list_templates(&self, account_id: Option<&str>, page: u32, limit: u32) -> StoreResult<Page<Template>> {
        let q = match account_id {
            Some(a) => KeyQuery::index(Index::Gsi2, account_templates(a)),
            None => KeyQuery::index(Index::Gsi1, ALL_TEMPLATES.into()),
        };
        self.list_indexed(&q, page, limit).await
    }

    pub async fn delete_template(&self, t: &Template) -> StoreResult<()> {
        let err = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo(e.to_string());
        let del = |pk: String, sk: String| {
            Delete::builder().table_name(&self.table).key("PK", s(pk)).key("SK", s(sk)).build().map_err(err)
        };
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(del(template_pk(&t.id), TEMPLATE_SK.into())?).build())
            .transact_items(
                TransactWriteItem::builder()
                    .delete(del(account_pk(&t.account_id), template_name_sk(&t.name, &t.language))?)
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }
}
