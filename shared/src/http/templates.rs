//! `/api/templates`: the approved message templates campaigns send (the workflows are in
//! [`crate::usecases::templates`]).

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::template::NewTemplate;
use crate::error::AppResult;
use crate::usecases::templates::{self, load};

pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let new: NewTemplate = req.json()?;
    Ok(Reply::created(json!(templates::create(&app, new).await?)))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let p = req.pagination(20)?;
    let account = req.query_id("account_id")?;
    let page = app
        .db
        .list_templates(account.as_deref(), p.page, p.limit)
        .await
        .map_err(app.store_err("could not list templates"))?;
    Ok(Reply::page(page.items.iter().map(|t| json!(t)).collect(), page.total, p))
}

pub async fn get(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(load(&app, &req.id("template")?).await?)))
}

pub async fn delete(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let template = templates::delete(&app, &req.id("template")?).await?;
    Ok(Reply::ok(json!({ "id": template.id, "deleted": true })))
}
