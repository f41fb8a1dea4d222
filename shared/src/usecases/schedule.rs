//! The scheduled start: what a campaign's one-time schedule invokes at its `scheduled_at`
//! (EventBridge Scheduler in AWS, the local stack's firing task locally). It starts the
//! campaign through [`start_campaign`], exactly as `POST /start` does, once: a fire for a
//! campaign that is gone or no longer scheduled is stale and does nothing; one for a campaign
//! moved to a later time only makes sure the campaign's own schedule is in place; of two fires
//! for the same time only one wins the conditional write.

use serde::Serialize;
use serde_json::Value;

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::schedule::{OnFire, ScheduledStart, on_fire};
use crate::error::{AppError, ErrorKind};
use crate::usecases::lifecycle::start_campaign;

/// What a fire did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Fired {
    /// The campaign is sending.
    Started { campaign_id: String },
    /// Nothing to do: the input is not a start, or the campaign is not (or no longer)
    /// scheduled for this time.
    Ignored { reason: String },
    /// The campaign cannot be sent (no recipients, template gone or no longer approved, …): it
    /// is a draft again, with the reason in `schedule_error`, for someone to fix and start.
    ReturnedToDraft { campaign_id: String, reason: String },
}

/// An error worth another attempt (the store or the queue failed, an import is running):
/// Lambda retries an asynchronous invocation twice, then hands it to the failure destination.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryLater(String);

/// Handles one fire. Never fails on input it cannot use (that would only be retried in vain):
/// such input is logged and ignored.
pub async fn scheduled_start(app: &App, event: Value) -> Result<Fired, RetryLater> {
    let fired: ScheduledStart = match serde_json::from_value(event.clone()) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%event, error = %e, "not a scheduled start; ignored");
            return Ok(Fired::Ignored { reason: format!("not a scheduled start: {e}") });
        }
    };
    let campaign = match Id::parse(&fired.campaign_id) {
        Some(id) => app.db.get_campaign(&id).await.map_err(store)?,
        None => None,
    };
    let Some(campaign) = campaign else {
        return Ok(ignored(&fired, format!("campaign {} does not exist", fired.campaign_id)));
    };
    match on_fire(&campaign, &fired, chrono::Utc::now()) {
        OnFire::Start => {}
        OnFire::Stale { reason } => return Ok(ignored(&fired, reason)),
        OnFire::KeepSchedule { reason } => {
            if let Some(own) = ScheduledStart::of(&campaign) {
                app.scheduler
                    .put_start(&own)
                    .await
                    .map_err(|e| RetryLater(format!("could not keep the campaign's schedule: {e}")))?;
            }
            return Ok(ignored(&fired, reason));
        }
    }
    match start_campaign(app, &campaign).await {
        Ok(started) => {
            tracing::info!(campaign = %started.id, scheduled_at = %fired.scheduled_at, "scheduled campaign started");
            Ok(Fired::Started { campaign_id: started.id.to_string() })
        }
        Err(e) if e.kind == ErrorKind::Invalid => return_to_draft(app, &campaign, e).await,
        Err(e) if e.kind == ErrorKind::Conflict => {
            // Either the campaign changed meanwhile (stale now) or an import holds it (retry).
            let current = app.db.get_campaign(&campaign.id).await.map_err(store)?;
            match current.map(|c| on_fire(&c, &fired, chrono::Utc::now())) {
                None => Ok(ignored(&fired, format!("campaign {} was deleted meanwhile", campaign.id))),
                Some(OnFire::Stale { reason } | OnFire::KeepSchedule { reason }) => Ok(ignored(&fired, reason)),
                Some(OnFire::Start) => Err(RetryLater(e.message)),
            }
        }
        Err(e) => Err(RetryLater(e.message)),
    }
}

/// A fire with nothing (more) to do, logged with its reason.
fn ignored(fired: &ScheduledStart, reason: String) -> Fired {
    tracing::info!(campaign = %fired.campaign_id, scheduled_at = %fired.scheduled_at, %reason, "stale scheduled start; nothing to do");
    Fired::Ignored { reason }
}

/// The scheduled-start function's handler ([`crate::lambda::serve`]).
pub async fn handle(app: std::sync::Arc<App>, event: Value) -> Result<Fired, RetryLater> {
    scheduled_start(&app, event).await
}

fn store(e: StoreError) -> RetryLater {
    RetryLater(format!("could not read the campaign: {e}"))
}

/// The campaign cannot be sent at its time: rather than stay `scheduled` for a time that has
/// passed, it goes back to draft with the reason.
async fn return_to_draft(
    app: &App,
    campaign: &crate::domain::campaign::Campaign,
    e: AppError,
) -> Result<Fired, RetryLater> {
    let reason =
        format!("the scheduled start at {} failed: {}", campaign.scheduled_at.as_deref().unwrap_or("?"), e.message);
    match app.db.transition(campaign, Action::Unschedule, &now(), Some(&reason)).await {
        Ok(draft) => {
            tracing::warn!(campaign = %draft.id, %reason, "scheduled campaign could not start; back to draft");
            Ok(Fired::ReturnedToDraft { campaign_id: draft.id.to_string(), reason })
        }
        Err(StoreError::ConditionFailed) => {
            let status = app.db.get_campaign(&campaign.id).await.ok().flatten().map(|c| c.status);
            let now_is = status.map_or("gone", CampaignStatus::as_str);
            Ok(Fired::Ignored { reason: format!("campaign {} changed meanwhile (it is {now_is})", campaign.id) })
        }
        Err(e) => Err(RetryLater(format!("could not return the campaign to draft: {e}"))),
    }
}
