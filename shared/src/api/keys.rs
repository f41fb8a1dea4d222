//! `/api/keys`: the API keys that open every `/api/...` route. A key is shown once, when it is
//! made; listings show its name and first characters, never the key or its hash.

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, App, Reply};
use crate::auth;
use crate::domain::api_key::NewApiKey;
use crate::error::{ApiError, ApiResult};

pub async fn create(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let new: NewApiKey = req.json()?;
    Ok(Reply::created(auth::issue(&app.db, new).await?.view()))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let p = req.pagination(20)?;
    let page = app.db.list_api_keys(p.page, p.limit).await.map_err(app.store_err("could not list the API keys"))?;
    Ok(Reply::page(page.items.iter().map(|k| json!(k)).collect(), page.total, p))
}

/// Revoking takes effect at once: the authorizer reads keys with consistent reads and its
/// answers are not cached. The key that makes this request may revoke itself.
pub async fn revoke(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let id = req.param("id");
    let not_found = || ApiError::not_found(format!("API key {id} not found"));
    uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    if !app.db.revoke_api_key(id).await.map_err(app.store_err("could not revoke the API key"))? {
        return Err(not_found());
    }
    Ok(Reply::ok(json!({ "id": id, "revoked": true })))
}
