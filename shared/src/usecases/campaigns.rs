//! Creating, changing and deleting a campaign, and what every campaign workflow needs first:
//! the campaign itself ([`load`]) and its account and template checked ([`checked_template`]).

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::campaign::{Campaign, CampaignChanges, NewCampaign, check_references};
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::schedule::{ScheduleChange, ScheduledStart, after_edit};
use crate::domain::template::Template;
use crate::error::{AppError, AppResult};
use crate::usecases::lifecycle::{forget_schedule, sync_schedule};
use crate::usecases::load_by_id;

pub async fn load(app: &App, id: &Id) -> AppResult<Campaign> {
    load_by_id(app, "campaign", id, app.db.get_campaign(id)).await
}

/// 409 naming the status the campaign is in.
pub fn wrong_status(c: &Campaign, action: &str) -> AppError {
    AppError::conflict(format!("campaign {} is {}; {action}", c.id, c.status.as_str()))
}

/// Loads what a campaign refers to and checks it (exists, same account, approved, mapping).
pub async fn checked_template(app: &App, c: &Campaign) -> AppResult<Template> {
    let read = app.store_err("could not read the campaign's account or template");
    let account = app.db.get_account(&c.account_id).await.map_err(&read)?;
    let template = app.db.get_template(&c.template_id).await.map_err(&read)?;
    check_references(&c.account_id, account.as_ref(), &c.template_id, template.as_ref(), &c.variable_mapping)?;
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

/// Deletes a campaign in any status but `sending` (pause or cancel first): its recipients and
/// any schedule go with it. Answers the campaign as it was.
pub async fn delete(app: &App, id: &Id) -> AppResult<Campaign> {
    let campaign = load(app, id).await?;
    let refuse = |c: &Campaign| wrong_status(c, "pause or cancel it before deleting it");
    if !campaign.status.deletable() {
        return Err(refuse(&campaign));
    }
    match app.db.mark_deleting(&campaign.id, &now()).await {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return Err(refuse(&load(app, &campaign.id).await?)),
        Err(e) => return Err(app.store_err("could not delete the campaign")(e)),
    }
    app.db.delete_campaign(&campaign.id).await.map_err(app.store_err("could not delete the campaign"))?;
    forget_schedule(app, &campaign.id).await;
    Ok(campaign)
}
