//! `POST /api/campaigns/{id}/start | pause | cancel | retry-failed | test` (the workflows are
//! in [`crate::usecases::lifecycle`], [`crate::usecases::retry_failed`] and
//! [`crate::usecases::test_send`]).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::error::AppResult;
use crate::usecases::lifecycle;
use crate::usecases::retry_failed::{self, Selection};
use crate::usecases::test_send::{self, TestSend};

pub async fn start(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::start(&app, &req.id("campaign")?).await?)))
}

pub async fn pause(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::pause(&app, &req.id("campaign")?).await?)))
}

pub async fn cancel(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    Ok(Reply::ok(json!(lifecycle::cancel(&app, &req.id("campaign")?).await?)))
}

/// The optional body of `retry-failed`: only failures with these codes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    codes: Option<Vec<i64>>,
}

pub async fn retry_failed(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let id = req.id("campaign")?;
    let body: RetryBody = req.optional_json()?;
    let selection = Selection::checked(body.codes)?;
    Ok(Reply::ok(json!(retry_failed::retry_failed(&app, &id, &selection).await?)))
}

pub async fn test(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let id = req.id("campaign")?;
    let test: TestSend = req.json()?;
    Ok(Reply::ok(json!(test_send::send_test(&app, &id, test).await?)))
}
