//! `/api/keys`: the API keys that open every `/api/...` route. A key is shown once, when it is
//! made; listings show its name and first characters, never the key or its hash.

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::api_key::NewApiKey;
use crate::error::AppResult;
use crate::usecases::keys;

pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let new: NewApiKey = req.json()?;
    Ok(Reply::created(keys::issue(&app.db, new).await?.view()))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let p = req.pagination(20)?;
    let page = app.db.list_api_keys(p.page, p.limit).await.map_err(app.store_err("could not list the API keys"))?;
    Ok(Reply::page(page.items.iter().map(|k| json!(k)).collect(), page.total, p))
}

pub async fn revoke(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let id = req.id("API key")?;
    keys::revoke(&app.db, &id).await?;
    Ok(Reply::ok(json!({ "id": id, "revoked": true })))
}
