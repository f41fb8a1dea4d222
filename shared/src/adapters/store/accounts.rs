use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::keys::*;
use super::{Db, Index, KeyQuery, Page, StoreError, StoreResult, decode, s};
use crate::domain::account::Account;
use crate::domain::campaign::CampaignStatus;

/// How [`Db::save_account`] writes an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountWrite {
    Create,
    /// `drop_legacy_token` also deletes the token item earlier versions kept in the table
    /// (tokens live in Secrets Manager now).
    Update {
        drop_legacy_token: bool,
    },
}

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

    /// Writes the account: a create is guarded against an id collision, an update against a
    /// concurrent delete.
    pub async fn save_account(&self, a: &Account, write: AccountWrite) -> StoreResult<()> {
        let (condition, drop_legacy_token) = match write {
            AccountWrite::Create => ("attribute_not_exists(PK)", false),
            AccountWrite::Update { drop_legacy_token } => ("attribute_exists(PK)", drop_legacy_token),
        };
        let account = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.account_item(a)?))
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let mut tx =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().put(account).build());
        if drop_legacy_token {
            let token = Delete::builder()
                .table_name(&self.table)
                .key("PK", s(account_pk(&a.id)))
                .key("SK", s(LEGACY_TOKEN_SK))
                .build()
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
            tx = tx.transact_items(TransactWriteItem::builder().delete(token).build());
        }
        tx.send().await?;
        Ok(())
    }

    pub async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        self.get(account_pk(id), ACCOUNT_SK).await
    }

    pub async fn list_accounts(&self, page: u32, limit: u32) -> StoreResult<Page<Account>> {
        let q = KeyQuery::index(Index::Gsi1, ALL_ACCOUNTS.into());
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
            let q =
                KeyQuery::index(Index::Gsi2, account_campaigns(account_id)).with_prefix(format!("{}#", st.as_str()));
            total += self.count(&q).await?;
        }
        Ok(total)
    }

    /// Removes the account's items (pace, opt-outs, a legacy token item) and its templates. Campaigns stay as history; they can no
    /// longer be started.
    pub async fn delete_account(&self, id: &str) -> StoreResult<()> {
        let templates = self.query_keys(&KeyQuery::index(Index::Gsi2, account_templates(id))).await?;
        let mut keys = self.query_keys(&KeyQuery::table(account_pk(id), "")).await?;
        keys.extend(templates);
        self.delete_keys(keys).await?;
        Ok(())
    }
}
