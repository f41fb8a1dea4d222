//! `POST /api/campaigns/{id}/start | pause | cancel`: the campaign's state machine.

use std::sync::Arc;

use serde_json::json;

use super::campaigns::{checked_template, load, wrong_status};
use super::{ApiRequest, App, Reply};
use crate::domain::campaign::{Action, Campaign};
use crate::domain::sending::DispatchJob;
use crate::error::{ApiError, ApiResult};
use crate::store::StoreError;

fn allowed_statuses(action: Action) -> String {
    let names: Vec<&str> = action.from().iter().map(|s| s.as_str()).collect();
    format!("only {} campaigns can be {}", names.join(" or "), action.verb())
}

/// Applies the action with a conditional write; a lost race is answered with the status the
/// campaign has now.
async fn transition(app: &App, c: &Campaign, action: Action) -> ApiResult<Campaign> {
    match app.change_status(c, action, None).await {
        Ok(updated) => Ok(updated),
        Err(StoreError::ConditionFailed) => {
            let current = load(app, &c.id).await?;
            if action.allowed(current.status) {
                Err(ApiError::conflict(format!(
                    "campaign {} is importing recipients; try again when the import has finished",
                    current.id
                )))
            } else {
                Err(wrong_status(&current, &allowed_statuses(action)))
            }
        }
        Err(e) => Err(app.store_err("could not change the campaign")(e)),
    }
}

/// Starts a draft, or resumes a paused campaign: only recipients still pending are sent.
pub async fn start(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let campaign = load(&app, req.param("id")).await?;
    if !Action::Start.allowed(campaign.status) {
        return Err(wrong_status(&campaign, &allowed_statuses(Action::Start)));
    }
    if campaign.total_recipients == 0 {
        return Err(ApiError::invalid(format!("campaign {} has no recipients; import some first", campaign.id)));
    }
    checked_template(&app, &campaign).await?;
    let started = transition(&app, &campaign, Action::Start).await?;
    if let Err(e) = app.queue.dispatch(&DispatchJob { campaign_id: started.id.clone(), cursor: None }).await {
        // Nothing will send it: say so on the campaign rather than leave it "sending".
        let reason = "the send could not be queued; start the campaign again";
        let _ = app.change_status(&started, Action::Pause, Some(reason)).await;
        return Err(ApiError::unavailable("could not queue the campaign for sending", e));
    }
    Ok(Reply::ok(json!(started)))
}

pub async fn pause(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let campaign = load(&app, req.param("id")).await?;
    Ok(Reply::ok(json!(transition(&app, &campaign, Action::Pause).await?)))
}

/// Cancels for good; recipients not sent yet stay pending and are never sent.
pub async fn cancel(app: Arc<App>, req: ApiRequest) -> ApiResult<Reply> {
    let campaign = load(&app, req.param("id")).await?;
    Ok(Reply::ok(json!(transition(&app, &campaign, Action::Cancel).await?)))
}
