//! A campaign's state machine: the one way a campaign starts sending ([`start_campaign`],
//! shared by `POST /start` and the scheduled start), scheduling, pausing, cancelling and
//! resuming, keeping a scheduled campaign's schedule in step, and announcing every change
//! ([`change_status`]).

use crate::adapters::store::{StoreError, StoreResult};
use crate::app::App;
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::events::CampaignEvent;
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::schedule::{ScheduledStart, StartPlan, StartRefused, plan_start};
use crate::domain::sending::DispatchJob;
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::{checked_template, load, wrong_status};

fn allowed_statuses(action: Action) -> String {
    let names: Vec<&str> = action.from().iter().map(|s| s.as_str()).collect();
    format!("only {} campaigns can be {}", names.join(" or "), action.verb())
}

/// Applies the action with a conditional write; a lost race is answered with the status (or
/// the time) the campaign has now.
async fn transition(app: &App, c: &Campaign, action: Action) -> AppResult<Campaign> {
    match change_status(app, c, action, None).await {
        Ok(updated) => Ok(updated),
        Err(StoreError::ConditionFailed) => {
            let current = load(app, &c.id).await?;
            if !action.allowed(current.status) {
                Err(wrong_status(&current, &allowed_statuses(action)))
            } else if action.pins_scheduled_at() && current.scheduled_at != c.scheduled_at {
                Err(AppError::conflict(format!(
                    "campaign {} was rescheduled meanwhile (scheduled_at is now {}); try again",
                    current.id,
                    current.scheduled_at.as_deref().unwrap_or("null")
                )))
            } else if action.sends() {
                Err(AppError::conflict(format!(
                    "campaign {} is importing recipients; try again when the import has finished",
                    current.id
                )))
            } else {
                Err(AppError::conflict(format!("campaign {} changed meanwhile; try again", current.id)))
            }
        }
        Err(e) => Err(app.store_err("could not change the campaign")(e)),
    }
}

/// What starting and scheduling both require: recipients, and an account and an approved
/// template that still match the mapping.
async fn check_sendable(app: &App, c: &Campaign) -> AppResult<()> {
    if c.total_recipients == 0 {
        return Err(AppError::invalid(format!("campaign {} has no recipients; import some first", c.id)));
    }
    checked_template(app, c).await.map(|_| ())
}

/// Starts sending `campaign` (as the caller read it): the one way a campaign starts, for
/// `POST /start` and for the scheduled start alike. Checks that it can be sent, moves it to
/// `sending` with a conditional write from the status it was read in (a scheduled campaign
/// only while it is still scheduled for the time read), and queues its dispatch. A draft or a
/// scheduled campaign starts; a paused one resumes, and only recipients still pending are sent.
pub async fn start_campaign(app: &App, campaign: &Campaign) -> AppResult<Campaign> {
    check_sendable(app, campaign).await?;
    let action = if campaign.status == CampaignStatus::Scheduled { Action::StartScheduled } else { Action::Start };
    let started = transition(app, campaign, action).await?;
    dispatch(app, started).await
}

/// Queues the first step of a campaign's new dispatch run; if that fails, nothing would send
/// it, so the campaign is paused with the reason rather than left "sending".
pub(crate) async fn dispatch(app: &App, sending: Campaign) -> AppResult<Campaign> {
    let first = DispatchJob::start(&sending.id, sending.dispatch_run.clone());
    if let Err(e) = app.queue.dispatch(&first, std::time::Duration::ZERO).await {
        let reason = "the send could not be queued; start the campaign again";
        let _ = change_status(app, &sending, Action::Pause, Some(reason)).await;
        return Err(AppError::unavailable("could not queue the campaign for sending", e));
    }
    Ok(sending)
}

/// Schedules a draft for its `scheduled_at`: the schedule first, then the status, so that a
/// campaign shown `scheduled` always has a schedule (a schedule whose campaign did not become
/// scheduled only fires a start that finds nothing to do, and is removed here when possible).
async fn schedule_campaign(app: &App, campaign: &Campaign) -> AppResult<Campaign> {
    check_sendable(app, campaign).await?;
    let start =
        ScheduledStart::of(campaign).ok_or_else(|| AppError::invalid("scheduled_at is required to schedule"))?;
    app.scheduler
        .put_start(&start)
        .await
        .map_err(|e| AppError::unavailable("could not create the campaign's schedule", e))?;
    match transition(app, campaign, Action::Schedule).await {
        Ok(scheduled) => Ok(scheduled),
        Err(e) => {
            sync_schedule(app, &campaign.id).await;
            Err(e)
        }
    }
}

/// Makes the campaign's schedule agree with the stored campaign after a change that failed
/// half-way: a schedule for its time if it is scheduled, none otherwise. Best effort: a
/// schedule left behind only fires a start that finds nothing to do.
pub async fn sync_schedule(app: &App, id: &str) {
    let result = match app.db.get_campaign(id).await {
        Ok(Some(c)) if c.status == CampaignStatus::Scheduled => match ScheduledStart::of(&c) {
            Some(start) => app.scheduler.put_start(&start).await,
            None => app.scheduler.delete_start(id).await.map(|_| ()),
        },
        Ok(_) => app.scheduler.delete_start(id).await.map(|_| ()),
        Err(e) => {
            tracing::warn!(campaign = %id, error = %e, "could not read the campaign to bring its schedule in step");
            return;
        }
    };
    if let Err(e) = result {
        tracing::warn!(campaign = %id, error = %e, "could not bring the campaign's schedule in step");
    }
}

/// Removes the schedule of a campaign that is no longer scheduled (started, cleared,
/// cancelled, deleted). Best effort: the change itself is done, and a schedule left behind
/// fires a start that finds nothing to do, after which the scheduler deletes it.
pub async fn forget_schedule(app: &App, id: &str) {
    if let Err(e) = app.scheduler.delete_start(id).await {
        tracing::warn!(campaign = %id, error = %e, "the campaign's schedule was left behind; its start will do nothing");
    }
}

/// Starts a campaign. A draft whose `scheduled_at` is still ahead becomes `scheduled` and
/// starts by itself then; any other draft, a paused campaign (a resume) or a scheduled one
/// whose time has come starts now.
pub async fn start(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    let plan = plan_start(&campaign, chrono::Utc::now()).map_err(|refused| match refused {
        StartRefused::WrongStatus => {
            wrong_status(&campaign, "only draft, scheduled or paused campaigns can be started")
        }
        StartRefused::AlreadyScheduled { at } => wrong_status(
            &campaign,
            &format!("it starts by itself at {at}; to start it now, set scheduled_at to null with PUT, then start it"),
        ),
    })?;
    match plan {
        StartPlan::Schedule => schedule_campaign(app, &campaign).await,
        StartPlan::Now => {
            let started = start_campaign(app, &campaign).await?;
            if campaign.status == CampaignStatus::Scheduled {
                forget_schedule(app, &campaign.id).await;
            }
            Ok(started)
        }
    }
}

pub async fn pause(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    transition(app, &campaign, Action::Pause).await
}

/// Cancels for good; recipients not sent yet stay pending and are never sent. A scheduled
/// campaign's schedule goes with it (whatever the status read, in case it was scheduled
/// meanwhile).
pub async fn cancel(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    let cancelled = transition(app, &campaign, Action::Cancel).await?;
    forget_schedule(app, &cancelled.id).await;
    Ok(cancelled)
}

/// Moves the campaign through its state machine (see
/// [`crate::adapters::store::Db::transition`]) and announces the change on the event bus.
pub async fn change_status(
    app: &App,
    c: &Campaign,
    action: Action,
    pause_reason: Option<&str>,
) -> StoreResult<Campaign> {
    let changed = app.db.transition(c, action, &now(), pause_reason).await?;
    if let Some(event) = CampaignEvent::of(action, c.status) {
        app.events.publish(event, &changed, c.status).await;
    }
    Ok(changed)
}
