use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::keys::*;
use super::{Db, Index, KeyQuery, Page, StoreError, StoreResult, s};
use crate::domain::template::Template;

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
