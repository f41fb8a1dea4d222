use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::keys::*;
use super::{Db, KeyQuery, Page, StoreError, StoreResult, decode, s};
use crate::domain::account::Account;
use crate::domain::campaign::CampaignStatus;

impl Db {
    fn account_item(&self, a: &Account) -> StoreResult<super::Item> {
        self.item(
            a,
            vec![
                ("PK", account_pk(&a.id)),
                ("SK", ACCOUNT_SK.into()),
                ("GSI1PK", ALL_ACCOUNTS.into()),
                ("GSI1SK", created_sk(&a.created_at, &a.id)),
            ],
        )
    }

    /// The access token lives in its own item under the account's key, read only by senders,
    /// so that no listing or lookup of accounts ever loads it.
    fn token_put(&self, account_id: &str, token: &str) -> StoreResult<Put> {
        Put::builder()
            .table_name(&self.table)
            .item("PK", s(account_pk(account_id)))
            .item("SK", s(TOKEN_SK))
            .item("access_token", s(token))
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))
    }

    /// Writes the account and its token together; `must_exist` guards an update against a
    /// concurrent delete, `!must_exist` a create against an id collision.
    pub async fn save_account(&self, a: &Account, token: Option<&str>, must_exist: bool) -> StoreResult<()> {
        let condition = if must_exist { "attribute_exists(PK)" } else { "attribute_not_exists(PK)" };
        let account = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.account_item(a)?))
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let mut tx =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().put(account).build());
        if let Some(t) = token {
            tx = tx.transact_items(TransactWriteItem::builder().put(self.token_put(&a.id, t)?).build());
        }
        tx.send().await?;
        Ok(())
    }

    pub async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        self.get(account_pk(id), ACCOUNT_SK).await
    }

    pub async fn list_accounts(&self, page: u32, limit: u32) -> StoreResult<Page<Account>> {
        let q = KeyQuery::index("GSI1", ALL_ACCOUNTS.into());
        self.list_indexed(&q, page, limit).await
    }

    /// Pages through a keys-only index and loads the page's items.
    pub(crate) async fn list_indexed<T: serde::de::DeserializeOwned>(
        &self,
        q: &KeyQuery,
        page: u32,
        limit: u32,
    ) -> StoreResult<Page<T>> {
        let (total, keys) = tokio::try_join!(self.count(q), self.query_page(q, page, limit))?;
        let keys = keys.into_iter().map(super::table_key).collect();
        let items = self.batch_get(keys, None).await?;
        Ok(Page { items: decode(items)?, total })
    }

    /// How many of the account's campaigns are in one of `statuses`.
    pub async fn count_account_campaigns(&self, account_id: &str, statuses: &[CampaignStatus]) -> StoreResult<u64> {
        let mut total = 0;
        for st in statuses {
            let q = KeyQuery::index("GSI2", account_campaigns(account_id)).with_prefix(format!("{}#", st.as_str()));
            total += self.count(&q).await?;
        }
        Ok(total)
    }

    /// Removes the account, its token and its templates. Campaigns stay as history; they can no
    /// longer be started.
    pub async fn delete_account(&self, id: &str) -> StoreResult<()> {
        let templates = self.query_keys(&KeyQuery::index("GSI2", account_templates(id))).await?;
        let mut keys = self.query_keys(&KeyQuery::table(account_pk(id), "")).await?;
        keys.extend(templates);
        self.delete_keys(keys).await?;
        Ok(())
    }
}
