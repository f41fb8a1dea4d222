//! Creating, changing and deleting a campaign, and what every campaign workflow needs first:
//! the campaign itself ([`load`]) and its account and template checked ([`checked_template`]).

use crate::adapters::store::StoreError;
use crate::app::App;
use std::time::{Duration, Instant};

use crate::domain::campaign::{Campaign, CampaignChanges, CampaignStatus, Cost, NewCampaign, Progress, check_campaign};
use crate::domain::id::Id;
use crate::domain::job::Job;
use crate::domain::now;
use crate::domain::schedule::{ScheduleChange, ScheduledStart, after_edit};
use crate::domain::template::Template;
use crate::error::{AppError, AppResult};
use crate::usecases::lifecycle::{forget_schedule, sync_schedule};
use crate::usecases::load_by_id;
use crate::usecases::send::SendError;

/// The campaign, unless it does not exist or was deleted (its items may still be going).
pub async fn load(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load_by_id(app, "campaign", id, app.db.get_campaign(id)).await?;
    match campaign.deleting {
        Some(_) => Err(AppError::not_found(format!("campaign {id} not found"))),
        None => Ok(campaign),
    }
}

/// 409 naming the status the campaign is in.
pub fn wrong_status(c: &Campaign, action: &str) -> AppError {
    AppError::conflict(format!("campaign {} is {}; {action}", c.id, c.status.as_str()))
}

/// A campaign, its progress (at its account's pace) and its cost (at the account's prices,
/// when it has some).
pub async fn with_progress(app: &App, id: &Id) -> AppResult<(Campaign, Progress, Option<Cost>)> {
    let campaign = load(app, id).await?;
    let account =
        app.db.get_account(&campaign.account_id).await.map_err(app.store_err("could not read the account"))?;
    let now_unix = chrono::Utc::now().timestamp();
    let rate = account.as_ref().map(|a| a.send_rate());
    let cap = account.as_ref().and_then(|a| Some((a.messaging_limit_tier.daily_cap()?, &a.business_account_id)));
    let progress = match cap {
        Some((cap, business)) if campaign.status != CampaignStatus::Completed => {
            let reached = app.db.reached(business).await.map_err(app.store_err("could not read the 24-hour cap"))?;
            campaign.progress_under_cap(rate, cap, &reached, now_unix)
        }
        _ => campaign.progress(rate, now_unix),
    };
    let cost = account.and_then(|a| campaign.cost(&a.prices));
    Ok((campaign, progress, cost))
}

/// Loads what a campaign refers to and checks it (exists, same account, approved, mapping,
/// header values).
pub async fn checked_template(app: &App, c: &Campaign) -> AppResult<Template> {
    let read = app.store_err("could not read the campaign's account or template");
    let account = app.db.get_account(&c.account_id).await.map_err(&read)?;
    let template = app.db.get_template(&c.template_id).await.map_err(&read)?;
    check_campaign(c, account.as_ref(), template.as_ref())?;
    template.ok_or_else(|| AppError::invalid("template_id: template not found"))
}

/// Stores a new draft whose account and template check out.
pub async fn create(app: &App, new: NewCampaign) -> AppResult<Campaign> {
    let mut campaign = new.into_campaign(Id::generate(), &now())?;
    let template = checked_template(app, &campaign).await?;
    campaign.template_name = template.name;
    app.db.create_campaign(&campaign).await.map_err(app.store_err("could not store the campaign"))?;
    Ok(campaign)
}

const EDITABLE: &str = "only draft and scheduled campaigns can be updated";

/// Drafts and scheduled campaigns change. Fields left out stay as they are; `"scheduled_at":
/// null` clears the time. On a scheduled campaign a new time (still ahead) moves its schedule,
/// and clearing it makes the campaign a draft again without a schedule.
pub async fn update(app: &App, id: &Id, changes: CampaignChanges) -> AppResult<Campaign> {
    let was = load(app, id).await?;
    if !was.status.editable() {
        return Err(wrong_status(&was, EDITABLE));
    }
    let mut campaign = was.clone();
    let recheck = changes.touches_references();
    changes.apply(&mut campaign, &now())?;
    let change = after_edit(&mut campaign, &was, chrono::Utc::now())?;
    if recheck {
        campaign.template_name = checked_template(app, &campaign).await?.name;
    }
    if change == ScheduleChange::Move
        && let Some(start) = ScheduledStart::of(&campaign)
    {
        // The schedule moves first: should the write below fail, it is moved back.
        app.scheduler
            .put_start(&start)
            .await
            .map_err(|e| AppError::unavailable("could not move the campaign's schedule", e))?;
    }
    let result = app.db.update_editable(&campaign, &was).await;
    if result.is_err() && change == ScheduleChange::Move {
        sync_schedule(app, &campaign.id).await;
    }
    match result {
        Ok(updated) => {
            if change == ScheduleChange::Clear {
                forget_schedule(app, &updated.id).await;
            }
            Ok(updated)
        }
        Err(StoreError::ConditionFailed) => {
            let current = load(app, &campaign.id).await?;
            if current.status.editable() {
                Err(AppError::conflict(format!(
                    "campaign {} changed meanwhile (it is {} now, scheduled_at {}); try again",
                    current.id,
                    current.status.as_str(),
                    current.scheduled_at.as_deref().unwrap_or("null")
                )))
            } else {
                Err(wrong_status(&current, EDITABLE))
            }
        }
        Err(e) => Err(app.store_err("could not store the campaign")(e)),
    }
}

/// Deletes a campaign in any status but `sending` (pause or cancel first): it is gone for the
/// API at once (404, out of the listings) and its schedule with it; its recipients are removed
/// in the background ([`purge`]). Answers the campaign as it was.
pub async fn delete(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    let refuse = |c: &Campaign| wrong_status(c, "pause or cancel it before deleting it");
    if !campaign.status.deletable() {
        return Err(refuse(&campaign));
    }
    let stamp = now();
    match app.db.mark_deleting(&campaign.id, &stamp, chrono::Utc::now().timestamp()).await {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return Err(refuse(&load(app, &campaign.id).await?)),
        Err(e) => return Err(app.store_err("could not delete the campaign")(e)),
    }
    forget_schedule(app, &campaign.id).await;
    // Should this fail, the reconciler queues it later: the campaign is deleted either way.
    if let Err(e) = app.queue.job_later(&Job::DeleteCampaign { campaign_id: campaign.id.clone() }, Duration::ZERO).await
    {
        tracing::warn!(campaign = %campaign.id, error = %e, "the removal of the campaign's items waits for the reconciler");
    }
    Ok(campaign)
}

/// Recipients deleted per batch of work between two checks of the deadline.
const PURGE_STEP: usize = 2_000;

/// Removes a deleted campaign's items, recipients first and the campaign item last, until
/// `deadline` is near; then queues itself to go on. Any failure is taken up again where it
/// stopped (the job is delivered again, or the reconciler queues it). Returns how many
/// recipients it removed.
pub async fn purge(app: &App, campaign_id: &Id, deadline: Instant) -> Result<usize, SendError> {
    let Some(campaign) = app.db.get_campaign(campaign_id).await? else { return Ok(0) };
    if campaign.deleting.is_none() {
        tracing::warn!(campaign = %campaign.id, "a delete job for a campaign not deleted is ignored");
        return Ok(0);
    }
    let mut removed = 0;
    loop {
        let step = app.db.delete_recipients(&campaign, PURGE_STEP).await?;
        removed += step;
        if step == 0 {
            app.db.delete_campaign(&campaign.id).await?;
            tracing::info!(campaign = %campaign.id, removed, "deleted campaign removed");
            return Ok(removed);
        }
        app.db.note_deleting(&campaign.id, chrono::Utc::now().timestamp()).await?;
        if deadline.saturating_duration_since(Instant::now()) < PURGE_MARGIN {
            let job = Job::DeleteCampaign { campaign_id: campaign.id.clone() };
            app.queue.job_later(&job, Duration::ZERO).await?;
            tracing::info!(campaign = %campaign.id, removed, "deleted campaign: going on in the next job");
            return Ok(removed);
        }
    }
}

/// A purge stops this long before its deadline (a step takes a second or two).
const PURGE_MARGIN: Duration = Duration::from_secs(10);

/// Queues again the removal of deleted campaigns that made no progress for five minutes (a job
/// lost, or a failure after the campaign was marked). Returns how many.
pub async fn resume_stalled_deletions(app: &App) -> Result<usize, StoreError> {
    let now_unix = chrono::Utc::now().timestamp();
    let stalled = app.db.stalled_deletions(now_unix - 300).await?;
    for c in &stalled {
        app.db.note_deleting(&c.id, now_unix).await?;
        if let Err(e) = app.queue.job_later(&Job::DeleteCampaign { campaign_id: c.id.clone() }, Duration::ZERO).await {
            tracing::warn!(campaign = %c.id, error = %e, "could not queue the removal of a deleted campaign");
        }
    }
    Ok(stalled.len())
}
