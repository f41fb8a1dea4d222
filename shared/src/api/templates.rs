//! `/api/templates`: the approved message templates campaigns send.

use std::sync::Arc;

use serde_json::json;

use super::request::load_by_id;
use super::{ApiRequest, App, Reply};
use crate::domain::now;
use crate::domain::template::{NewTemplate, Template};
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

pub(crate) async fn load(app: &App, id: &str) -> ApiResult<Template> {
    load_by_id(app, "template", id, app.db.get_template(id)).await
}

pub async fn create(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let new: NewTemplate = req.json()?;
    let template = new.validate(uuid::Uuid::new_v4().to_string(), &now())?;
    if app.db.get_account(&template.account_id).await.map_err(app.store_err("could not read the account"))?.is_none() {
        return Err(ApiError::invalid(format!("account_id: no account with id {}", template.account_id)));
    }
    match app.db.create_template(&template).await {
        Ok(()) => Ok(Reply::created(json!(template))),
        Err(StoreError::ConditionFailed) => Err(ApiError::conflict(format!(
            "the account already has a template named {} in {}",
            template.name, template.language
        ))),
        Err(e) => Err(app.store_err("could not store the template")(e)),
    }
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let p = req.pagination(20)?;
    let account = req.query("account_id");
    if let Some(a) = account
        && uuid::Uuid::parse_str(a).is_err()
    {
        return Err(ApiError::bad_request(format!("account_id must be an account id (a UUID), got '{a}'")));
    }
    let page =
        app.db.list_templates(account, p.page, p.limit).await.map_err(app.store_err("could not list templates"))?;
    Ok(Reply::page(page.items.iter().map(|t| json!(t)).collect(), page.total, p))
}

pub async fn get(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    Ok(Reply::ok(json!(load(&app, req.param("id")).await?)))
}

/// Campaigns that use a deleted template stay as they are; they can no longer start.
pub async fn delete(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let template = load(&app, req.param("id")).await?;
    app.db.delete_template(&template).await.map_err(app.store_err("could not delete the template"))?;
    Ok(Reply::ok(json!({ "id": template.id, "deleted": true })))
}
