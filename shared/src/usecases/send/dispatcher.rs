//! The dispatcher: releases a sending campaign's pending recipients into send jobs, a window
//! at a time. Each step reads the campaign; if fewer than a window (about three seconds of the
//! account's pace still to send, see [`dispatch_window`]) of the recipients this run queued
//! are still unprocessed, it queues send jobs for the next pending ones, each delayed until
//! shortly before the account's pace reaches it; then it queues its next step a second later.
//! So the send queue holds a few seconds of any account's pace at most, and no sender waits on
//! work queued minutes ahead of its time.

use std::time::Duration;

use super::{SendError, complete_if_done};
use crate::adapters::store::sending::now_micros;
use crate::app::App;
use crate::domain::account::Account;
use crate::domain::campaign::Campaign;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::domain::daily_cap::hour_of;
use crate::domain::id::Id;
use crate::domain::phone::Phone;
use crate::domain::sending::{
    DispatchJob, RATE_WINDOW_MS, SendJob, dispatch_window, job_due, job_size, measure_rate, step_room, still_to_send,
};
use crate::domain::window::{SendWindow, WindowZone};
use crate::usecases::lifecycle::change_status;

/// The time between two steps of a run.
pub const STEP: Duration = Duration::from_secs(1);

/// Handles one dispatch step. Steps of a campaign that is not sending, or of a run that a
/// later start or resume replaced, do nothing; queueing a recipient twice is harmless (a
/// recipient is claimed once).
pub async fn dispatch(app: &App, step: DispatchJob) -> Result<(), SendError> {
    let Some(campaign) = app.db.get_campaign(&step.campaign_id).await? else { return Ok(()) };
    if campaign.status != CampaignStatus::Sending || step.run != campaign.dispatch_run {
        return Ok(());
    }
    tracing::Span::current().record("account", campaign.account_id.as_str());
    let Some(account) = app.db.get_account(&campaign.account_id).await? else {
        let reason = "the campaign's account was deleted";
        change_status(app, &campaign, Action::Pause, Some(reason)).await.ok();
        return Ok(());
    };
    if let Some(until) = campaign.limit_until.filter(|until| *until > chrono::Utc::now().timestamp())
        && !room_opened(app, &campaign, &account, until).await?
    {
        // Waiting for the cap: the run starts over once there is room (the recipients its
        // senders let go of are behind its cursor).
        let next = DispatchJob::start(&campaign.id, step.run);
        let left = (until - chrono::Utc::now().timestamp()).max(1) as u64;
        app.queue.dispatch(&next, WAIT_POLL.min(Duration::from_secs(left))).await?;
        return Ok(());
    }
    let now_unix = chrono::Utc::now().timestamp();
    if let Some(at) = step.not_before.filter(|at| *at > now_unix) {
        app.queue.dispatch(&step, until(at)).await?;
        return Ok(());
    }
    // A window kept in one zone for everyone: closed now, the whole run waits for it.
    if let Some(window) = &campaign.send_window
        && let WindowZone::Fixed(zone) = window.timezone
        && let Some(at) = window.opens_at(zone, chrono::Utc::now())
    {
        return start_over_at(app, &campaign.id, step.run, at.timestamp()).await;
    }
    let rate = account.send_rate();
    let base = step.base.unwrap_or(campaign.processed_count);
    // Recipients of this run queued and not processed yet. Outcomes recorded for recipients
    // of an earlier run count too, which only makes this step queue a little more.
    let in_flight = (base + step.queued).saturating_sub(campaign.processed_count);
    let window = dispatch_window(rate);
    let mut next = DispatchJob { base: Some(base), ..step };
    note_rate(app, &campaign, &mut next).await;
    tracing::debug!(campaign = %campaign.id, in_flight, window, processed = campaign.processed_count, "dispatch step");
    if next.read_all {
        // Draining: the steps go on measuring the rate until what the run queued is counted
        // processed, or nothing was for a minute (a lost job is the reconciler's).
        let stalled = next
            .samples
            .first()
            .is_some_and(|(at, n)| now_unix * 1000 - at >= RATE_WINDOW_MS && *n == campaign.processed_count);
        if in_flight == 0 || stalled {
            return finish_run(app, &campaign.id, next.queued).await;
        }
        app.queue.dispatch(&next, STEP).await?;
        return Ok(());
    }
    let size = job_size(rate) as u64;
    let room = step_room(window, in_flight, rate);
    if room > 0 {
        let room = room as usize;
        let mut phones = Vec::new();
        let mut cursor = next.cursor.clone();
        let mut read = 0;
        // With a send window, recipients outside it are passed by: the step reads on (up to
        // MAX_READ_PER_STEP) until it has a window's worth inside theirs.
        loop {
            let want = (room - phones.len()) as i32;
            let (page, after) = app.db.pending_phones(&campaign, cursor.as_deref(), want).await?;
            read += page.len();
            cursor = after;
            let Some(window) = &campaign.send_window else {
                phones = page;
                break;
            };
            let (open, opens_at) = in_window(app, &campaign, &account, window, page).await?;
            next.opens_at = next.opens_at.into_iter().chain(opens_at).min();
            phones.extend(open);
            if cursor.is_none() || phones.len() >= room || read >= MAX_READ_PER_STEP {
                break;
            }
        }
        let jobs: Vec<SendJob> =
            phones.chunks(size as usize).map(|p| SendJob::new(&campaign.id, next.run.clone(), p.to_vec(), 0)).collect();
        // Each job is due shortly before the account's pace reaches it (behind what is surely
        // still to send): the jobs come a few at a time, not all at once.
        let reserved_ahead = app.db.next_slot(&account.id).await?.map_or(0, |next| next - now_micros());
        let ahead = still_to_send(in_flight, reserved_ahead, rate);
        let timed: Vec<(&SendJob, Duration)> =
            jobs.iter().enumerate().map(|(i, j)| (j, job_due(ahead, i, size as usize, rate))).collect();
        app.queue.send_jobs_at(&timed).await?;
        tracing::debug!(campaign = %campaign.id, jobs = jobs.len(), recipients = phones.len(), ahead, "queued");
        next.queued += phones.len() as u64;
        app.metrics.recipients_queued(&campaign.account_id, phones.len());
        if cursor.is_none()
            && let Some(at) = next.opens_at
        {
            // Some recipients wait for their window: the run reads them again when the first opens.
            return start_over_at(app, &campaign.id, next.run, at).await;
        }
        if cursor.is_none() && phones.is_empty() && in_flight == 0 {
            // A resumed campaign with nothing left to send completes here.
            return finish_run(app, &campaign.id, next.queued).await;
        }
        next.read_all = cursor.is_none();
        next.cursor = cursor;
    }
    app.queue.dispatch(&next, STEP).await?;
    Ok(())
}

/// Ends a run whose recipients are all queued and counted: the campaign completes if it is done.
async fn finish_run(app: &App, campaign_id: &Id, queued: u64) -> Result<(), SendError> {
    tracing::info!(campaign = %campaign_id, queued, "dispatch run finished");
    complete_if_done(app, campaign_id).await?;
    Ok(())
}

/// How often a run waiting for the 24-hour cap looks whether room opened (a raised tier, or
/// a wait that is over).
pub const WAIT_POLL: Duration = Duration::from_secs(15);

/// Whether the business's cap has room again before `until` (the account's tier was raised or
/// lifted): then the wait ends now.
async fn room_opened(app: &App, campaign: &Campaign, account: &Account, until: i64) -> Result<bool, SendError> {
    let now_unix = chrono::Utc::now().timestamp();
    let opened = match account.messaging_limit_tier.daily_cap() {
        None => true,
        Some(cap) => app.db.reached(&account.business_account_id).await?.room(cap, hour_of(now_unix)) > 0,
    };
    if opened {
        tracing::info!(campaign = %campaign.id, "the 24-hour cap has room again: sending on");
        app.db.end_limit_wait(&campaign.id, until).await?;
    }
    Ok(opened)
}

/// Pending recipients a step of a campaign with a send window reads at most, looking for
/// those inside their window.
const MAX_READ_PER_STEP: usize = 2_000;

/// The delay of a step due at `at` (unix seconds): SQS delays 15 minutes at most, so a longer
/// wait goes round again.
fn until(at: i64) -> Duration {
    Duration::from_secs((at - chrono::Utc::now().timestamp()).clamp(1, 900) as u64)
}

/// Starts the run over at `at`, when a send window opens; the campaign notes the wait, so that
/// the reconciler does not take the still campaign for a stalled one.
async fn start_over_at(app: &App, campaign_id: &Id, run: Option<String>, at: i64) -> Result<(), SendError> {
    tracing::info!(campaign = %campaign_id, at, "recipients wait for their send window");
    app.db.note_window_wait(campaign_id, at).await?;
    let step = DispatchJob { not_before: Some(at), ..DispatchJob::start(campaign_id, run) };
    app.queue.dispatch(&step, until(at)).await?;
    Ok(())
}

/// The numbers whose send window is open now, and when the first of the others opens. Reads
/// the recipients (their zone may come from a `timezone` field).
async fn in_window(
    app: &App,
    campaign: &Campaign,
    account: &Account,
    window: &SendWindow,
    phones: Vec<Phone>,
) -> Result<(Vec<Phone>, Option<i64>), SendError> {
    let now = chrono::Utc::now();
    let mut open = Vec::with_capacity(phones.len());
    let mut first = None;
    for r in app.db.recipients(campaign, &phones).await? {
        match window.opens_at(window.zone_of(&r, account.default_timezone), now) {
            None => open.push(r.phone_number),
            Some(at) => first = first.into_iter().chain([at.timestamp()]).min(),
        }
    }
    Ok((open, first))
}

/// How often a run notes its measured rate on the campaign (`progress.rate_per_second`).
const NOTE_RATE_EVERY_SECONDS: i64 = 5;

/// Takes this step's reading of the campaign's progress and, every few seconds, notes the rate
/// over the last minute on the campaign (a lost note only leaves an older rate shown).
async fn note_rate(app: &App, campaign: &Campaign, step: &mut DispatchJob) {
    let now = chrono::Utc::now();
    let Some(rate) = measure_rate(&mut step.samples, now.timestamp_millis(), campaign.processed_count) else { return };
    if campaign.measured_at.is_some_and(|at| now.timestamp() - at < NOTE_RATE_EVERY_SECONDS) {
        return;
    }
    if let Err(e) = app.db.note_rate(&campaign.id, rate, now.timestamp()).await {
        tracing::warn!(campaign = %campaign.id, error = %e, "the measured rate could not be noted");
    }
}
