//! `/api/accounts`: WhatsApp Business numbers the campaigns send from (the workflows are in
//! [`crate::usecases::accounts`]; tokens never come back out through this API).

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::account::{AccountChanges, NewAccount};
use crate::error::AppResult;
use crate::usecases::accounts::{self, load};

pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let new: NewAccount = req.json()?;
    Ok(Reply::created(json!(accounts::create(&app, new).await?)))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let p = req.pagination(20)?;
    let page = app.db.list_accounts(p.page, p.limit).await.map_err(app.store_err("could not list accounts"))?;
    Ok(Reply::page(page.items.iter().map(|a| json!(a)).collect(), page.total, p))
}

pub async fn get(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(load(&app, &req.id("account")?).await?)))
}

pub async fn update(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let changes: AccountChanges = req.json()?;
    Ok(Reply::ok(json!(accounts::update(&app, &req.id("account")?, changes).await?)))
}

pub async fn delete(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let account = accounts::delete(&app, &req.id("account")?).await?;
    Ok(Reply::ok(json!({ "id": account.id, "deleted": true })))
}
