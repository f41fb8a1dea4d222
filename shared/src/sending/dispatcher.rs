//! The dispatcher: pages a sending campaign's pending recipients into send jobs.

use std::time::Duration;

use super::{SendError, complete_if_done};
use crate::api::App;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::domain::sending::{DispatchJob, SendJob, job_size};

/// Pending recipients read per query.
const PAGE: i32 = 1000;

/// Handles one dispatch job. Jobs for campaigns that are not sending do nothing; queueing the
/// same recipients twice is harmless (a recipient is claimed once).
pub async fn dispatch(app: &App, job: DispatchJob) -> Result<(), SendError> {
    let Some(campaign) = app.db.get_campaign(&job.campaign_id).await? else { return Ok(()) };
    if campaign.status != CampaignStatus::Sending {
        return Ok(());
    }
    let Some(account) = app.db.get_account(&campaign.account_id).await? else {
        let reason = "the campaign's account was deleted";
        app.change_status(&campaign, Action::Pause, Some(reason)).await.ok();
        return Ok(());
    };
    let size = job_size(account.send_rate());
    // After `dispatch_budget` recipients (50,000 by default, a few seconds of work) the rest
    // goes to a follow-up message, so a campaign of any size fans out without an invocation
    // nearing its timeout.
    let budget = app.config.dispatch_budget.max(1);
    let page = PAGE.min(budget as i32);
    let mut cursor = job.cursor;
    let mut queued = 0;
    loop {
        let (phones, next) = app.db.pending_phones(&campaign.id, cursor.as_deref(), page).await?;
        let jobs: Vec<SendJob> = phones
            .chunks(size)
            .map(|p| SendJob {
                job_id: uuid::Uuid::new_v4().to_string(),
                campaign_id: campaign.id.clone(),
                phones: p.to_vec(),
                attempt: 0,
            })
            .collect();
        app.queue.send_jobs(&jobs, Duration::ZERO).await?;
        queued += phones.len();
        cursor = next;
        match &cursor {
            None => break,
            Some(_) if queued >= budget => {
                app.queue.dispatch(&DispatchJob { campaign_id: campaign.id.clone(), cursor }).await?;
                tracing::info!(campaign = %campaign.id, queued, "dispatch continues in a follow-up message");
                return Ok(());
            }
            Some(_) => {}
        }
    }
    tracing::info!(campaign = %campaign.id, queued, "dispatch finished");
    // A resumed campaign with nothing left to send completes here.
    complete_if_done(app, &campaign.id).await
}
