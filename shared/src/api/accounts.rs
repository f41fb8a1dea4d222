//! `/api/accounts`: WhatsApp Business numbers the campaigns send from. Each account's access
//! token goes to its own Secrets Manager secret ([`crate::secrets::AccountTokens`]) and never
//! back out through this API.

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
    // The secret first: an account that exists always has its token.
    app.tokens.create(&account.id, &token).await.map_err(token_err("could not store the access token"))?;
    if let Err(e) = app.db.save_account(&account, false, false).await {
        forget_token(&app, &account.id).await;
        return Err(app.store_err("could not store the account")(e));
    }
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
    if let Some(t) = &token {
        app.tokens.put(&account.id, t).await.map_err(token_err("could not store the access token"))?;
    }
    match app.db.save_account(&account, true, token.is_some()).await {
        Ok(()) => Ok(Reply::ok(view(&account))),
        Err(StoreError::ConditionFailed) => {
            // Deleted meanwhile: its secret goes too.
            if token.is_some() {
                forget_token(&app, &account.id).await;
            }
            Err(ApiError::not_found(format!("account {} not found", account.id)))
        }
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
    // The token first: a delete that fails halfway leaves an account without a token (its
    // campaigns pause), never a token without an account; repeating the delete finishes it.
    app.tokens.delete(&account.id).await.map_err(token_err("could not delete the access token"))?;
    app.db.delete_account(&account.id).await.map_err(app.store_err("could not delete the account"))?;
    Ok(Reply::ok(json!({ "id": account.id, "deleted": true })))
}

fn token_err(context: &str) -> impl Fn(crate::secrets::SecretsError) -> ApiError + '_ {
    move |e| ApiError::unavailable(context, e)
}

/// Deletes the secret of an account that was not written after all.
async fn forget_token(app: &App, account_id: &str) {
    if let Err(e) = app.tokens.delete(account_id).await {
        tracing::error!(account = %account_id, error = %e, "the secret of an account that was not stored is left behind");
    }
}
