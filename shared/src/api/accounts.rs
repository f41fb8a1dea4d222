//! `/api/accounts`: WhatsApp Business numbers the campaigns send from.

use std::sync::Arc;

use serde_json::{Value, json};

use super::request::load_by_id;
use super::{ApiRequest, App, Reply};
use crate::domain::account::{Account, AccountChanges, NewAccount};
use crate::domain::campaign::CampaignStatus;
use crate::domain::now;
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

fn view(a: &Account) -> Value {
    json!(a)
}

pub(crate) async fn load(app: &App, id: &str) -> ApiResult<Account> {
    load_by_id(app, "account", id, app.db.get_account(id)).await
}

pub async fn create(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let new: NewAccount = req.json()?;
    let (account, token) = new.validate(uuid::Uuid::new_v4().to_string(), &now())?;
    app.db.save_account(&account, Some(&token), false).await.map_err(app.store_err("could not store the account"))?;
    Ok(Reply::created(view(&account)))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let p = req.pagination(20)?;
    let page = app.db.list_accounts(p.page, p.limit).await.map_err(app.store_err("could not list accounts"))?;
    Ok(Reply::page(page.items.iter().map(view).collect(), page.total, p))
}

pub async fn get(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    Ok(Reply::ok(view(&load(&app, req.param("id")).await?)))
}

pub async fn update(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let changes: AccountChanges = req.json()?;
    let mut account = load(&app, req.param("id")).await?;
    let token = changes.apply(&mut account, &now())?;
    match app.db.save_account(&account, token.as_deref(), true).await {
        Ok(()) => Ok(Reply::ok(view(&account))),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("account {} not found", account.id))),
        Err(e) => Err(app.store_err("could not store the account")(e)),
    }
}

pub async fn delete(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let account = load(&app, req.param("id")).await?;
    let busy = [CampaignStatus::Sending, CampaignStatus::Scheduled];
    let active = app
        .db
        .count_account_campaigns(&account.id, &busy)
        .await
        .map_err(app.store_err("could not read the account's campaigns"))?;
    if active > 0 {
        return Err(ApiError::conflict(format!(
            "account {} has {active} campaign(s) sending or scheduled; pause or cancel them first",
            account.id
        )));
    }
    app.db.delete_account(&account.id).await.map_err(app.store_err("could not delete the account"))?;
    Ok(Reply::ok(json!({ "id": account.id, "deleted": true })))
}
