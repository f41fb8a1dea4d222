//! `POST /api/campaigns/{id}/start | pause | cancel` (the workflows are in
//! [`crate::usecases::lifecycle`]).

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::error::AppResult;
use crate::usecases::lifecycle;

pub async fn start(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::start(&app, &req.id("campaign")?).await?)))
}

pub async fn pause(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::pause(&app, &req.id("campaign")?).await?)))
}

pub async fn cancel(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::cancel(&app, &req.id("campaign")?).await?)))
}
