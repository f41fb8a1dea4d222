//! `/api/campaigns`: create, read, change and delete campaigns (the workflows are in
//! [`crate::usecases::campaigns`]).

use std::sync::Arc;

use serde_json::json;

use super::{ApiRequest, Reply};
use crate::app::App;
use crate::domain::campaign::{Campaign, CampaignChanges, CampaignStatus, NewCampaign};
use crate::domain::format_time;
use crate::error::AppResult;
use crate::usecases::campaigns;

const STATUSES: &str = "draft, scheduled, sending, paused, completed, cancelled";

pub async fn create(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let new: NewCampaign = req.json()?;
    Ok(Reply::created(json!(campaigns::create(&app, new).await?)))
}

pub async fn list(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let (p, start) = req.listing(20)?;
    let status = req.query_enum("status", CampaignStatus::parse, STATUSES)?;
    let account = req.query_id("account_id")?;
    let page = app
        .db
        .list_campaigns(status, account.as_deref(), start.clone(), p.limit)
        .await
        .map_err(app.store_err("could not list campaigns"))?;
    Ok(Reply::listed(page.items.iter().map(shown).collect(), page.total, p, &start, page.next))
}

/// The campaign, with its `progress`, and its `cost` when the account has prices.
pub async fn get(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let (campaign, progress, cost) = campaigns::with_progress(&app, &req.id("campaign")?).await?;
    let mut answer = shown(&campaign);
    answer["progress"] = json!(progress);
    if let Some(cost) = cost {
        answer["cost"] = json!(cost);
    }
    Ok(Reply::ok(answer))
}

/// A campaign as the API shows it: while it waits for its business's 24-hour cap it stays
/// `sending`, with `waiting_for_limit` and the time it `resumes_at`.
fn shown(c: &Campaign) -> serde_json::Value {
    let mut answer = json!(c);
    if let Some(at) = c.resumes_at(chrono::Utc::now().timestamp()) {
        answer["waiting_for_limit"] = json!(true);
        answer["resumes_at"] = json!(chrono::DateTime::from_timestamp(at, 0).map(format_time));
    }
    answer
}

pub async fn update(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let changes: CampaignChanges = req.json()?;
    Ok(Reply::ok(json!(campaigns::update(&app, &req.id("campaign")?, changes).await?)))
}

pub async fn delete(app: Arc<App>, req: ApiRequest) -> AppResult<Reply> {
    let c = campaigns::delete(&app, &req.id("campaign")?).await?;
    Ok(Reply::ok(json!({ "id": c.id, "deleted": true, "recipients_deleted": c.total_recipients })))
}
