//! The approved message templates campaigns send.

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::template::{NewTemplate, Template};
use crate::error::{AppError, AppResult};
use crate::usecases::load_by_id;

pub async fn load(app: &App, id: &Id) -> AppResult<Template> {
    load_by_id(app, "template", id, app.db.get_template(id)).await
}

/// Stores a template of an existing account; one name and language per account.
pub async fn create(app: &App, new: NewTemplate) -> AppResult<Template> {
    let template = new.validate(Id::generate(), &now())?;
    if app.db.get_account(&template.account_id).await.map_err(app.store_err("could not read the account"))?.is_none() {
        return Err(AppError::invalid(format!("account_id: no account with id {}", template.account_id)));
    }
    match app.db.create_template(&template).await {
        Ok(()) => Ok(template),
        Err(StoreError::ConditionFailed) => Err(AppError::conflict(format!(
            "the account already has a template named {} in {}",
            template.name, template.language
        ))),
        Err(e) => Err(app.store_err("could not store the template")(e)),
    }
}

/// Campaigns that use a deleted template stay as they are; they can no longer start.
pub async fn delete(app: &App, id: &Id) -> AppResult<Template> {
    let template = load(app, id).await?;
    app.db.delete_template(&template).await.map_err(app.store_err("could not delete the template"))?;
    Ok(template)
}
