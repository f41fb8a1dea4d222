//! The reconciler, run every minute (an EventBridge schedule in AWS, a timer in the local
//! stack): every campaign finishes, whatever was lost on the way. It completes a sending
//! campaign whose recipients all have an outcome, and when one has not moved for a while it
//! looks why: claims older than any sender runs are resolved (their request may have reached
//! WhatsApp: failed with "outcome unknown", never sent again); pending recipients no job holds
//! (a lost job, an index that lagged behind an import) get a new dispatch run; counters that
//! disagree with a recount of the recipients are corrected.

use serde::Serialize;

use super::sender::STALE_CLAIM;
use super::{SendError, complete_if_done};
use crate::adapters::store::StoreError;
use crate::adapters::store::sending::{Holder, Outcome, Record};
use crate::app::App;
use crate::domain::campaign::{Campaign, Counted, Counters};
use crate::domain::now;
use crate::domain::recipient::{Recipient, RecipientStatus};
use crate::domain::sending::DispatchJob;

/// What one pass did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    pub campaigns: usize,
    pub stale_claims: usize,
    pub redispatched: usize,
    pub recounted: usize,
    pub completed: usize,
    /// Deleted campaigns whose removal was queued again.
    pub deletions_resumed: usize,
}

/// One pass over every sending campaign. A campaign that cannot be repaired now (the store
/// failing) is logged and left to the next pass.
pub async fn reconcile(app: &App) -> Result<Reconciled, SendError> {
    let mut done = Reconciled::default();
    for c in app.db.campaigns_sending().await? {
        done.campaigns += 1;
        if let Err(e) = reconcile_campaign(app, &c, &mut done).await {
            tracing::warn!(campaign = %c.id, error = %e, "reconciling failed; the next pass repeats it");
        }
    }
    match crate::usecases::campaigns::resume_stalled_deletions(app).await {
        Ok(n) => done.deletions_resumed = n,
        Err(e) => tracing::warn!(error = %e, "could not look for stalled deletions; the next pass does"),
    }
    if done != (Reconciled { campaigns: done.campaigns, ..Default::default() }) {
        tracing::info!(?done, "reconciled");
    }
    Ok(done)
}

async fn reconcile_campaign(app: &App, c: &Campaign, done: &mut Reconciled) -> Result<(), SendError> {
    let now_unix = chrono::Utc::now().timestamp();
    if complete_if_done(app, &c.id).await? {
        done.completed += 1;
        return Ok(());
    }
    let Some(c) = app.db.get_campaign(&c.id).await? else { return Ok(()) };
    let waits_until = c.limit_until.into_iter().chain(c.window_wait_until).max();
    if waits_until.is_some_and(|until| until + app.config.stall_seconds > now_unix) {
        return Ok(()); // waiting for the 24-hour cap or a send window: its dispatch run wakes it
    }
    // A campaign that moved since the last pass is left alone; one that has not moved for a
    // while (`stall_seconds`) may have lost something.
    let noted = app.db.noted_progress(&c.id).await?;
    match noted {
        Some((processed, at)) if processed == c.processed_count => {
            if now_unix - at < app.config.stall_seconds {
                return Ok(());
            }
        }
        _ => {
            app.db.note_progress(&c.id, c.processed_count, now_unix).await?;
            return Ok(());
        }
    }
    // The recipients not processed yet (the status index keeps those being sent with them).
    let open = app.db.recipients_in(&c, RecipientStatus::Pending, LOOK_AT).await?;
    let resolved = resolve_stale_claims(app, &c, &open, now_unix).await?;
    if resolved > 0 {
        done.stale_claims += resolved;
        done.completed += complete_if_done(app, &c.id).await? as usize;
        return Ok(());
    }
    let stranded = open
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending && r.retry_at.is_none_or(|at| at + RETRY_GRACE < now_unix))
        .count();
    if stranded > 0 {
        // No job holds them (one waiting for a retry would have set `retry_at` ahead): a new
        // run queues every pending recipient again; steps and jobs of the old run stop.
        let run = app.db.new_dispatch_run(&c.id).await?;
        app.queue.dispatch(&DispatchJob::start(&c.id, Some(run)), std::time::Duration::ZERO).await?;
        tracing::warn!(campaign = %c.id, stranded, "pending recipients no job holds: dispatched again");
        done.redispatched += 1;
        return Ok(());
    }
    if open.is_empty() && recount(app, &c).await? {
        done.recounted += 1;
        done.completed += complete_if_done(app, &c.id).await? as usize;
    }
    Ok(())
}

/// Pending recipients a pass looks at to tell whether any is stranded.
const LOOK_AT: u32 = 1000;

/// A recipient whose retry job is this late (seconds) has lost it.
const RETRY_GRACE: i64 = 60;

/// Records claims among `open` older than the stale-claim time as failed with "outcome
/// unknown", counted with them (their sender is gone; its request may have reached WhatsApp).
/// Returns how many.
async fn resolve_stale_claims(app: &App, c: &Campaign, open: &[Recipient], now_unix: i64) -> Result<usize, SendError> {
    let stale_before = now_unix - app.config.stale_claim_seconds();
    let records: Vec<Record> = open
        .iter()
        .filter(|r| r.status == RecipientStatus::Sending)
        .filter_map(|r| {
            let (job, at) = (r.claim_id.as_deref()?, r.claimed_at?);
            (at < stale_before).then(|| Record {
                phone: &r.phone_number,
                holder: Holder::Stale { job, claimed_at: at },
                outcome: Outcome::Failed { code: None, message: STALE_CLAIM.into() },
            })
        })
        .collect();
    let mut resolved = 0;
    for chunk in records.chunks(50) {
        resolved += app.db.record_outcomes(c, chunk, &now()).await?.iter().filter(|w| **w).count();
    }
    if resolved > 0 {
        tracing::warn!(campaign = %c.id, resolved, "stale claims recorded as outcome unknown");
    }
    Ok(resolved)
}

/// The counters a campaign's recipients add up to.
pub fn recounted(recipients: &[Recipient]) -> Counters {
    let mut d = Counters::default();
    for r in recipients {
        d.add(Counters::of_recipient(Counted {
            status: r.status,
            sent: r.wamid.is_some(),
            billed: r.billed,
            replied: r.replied_at.is_some(),
            clicked: r.clicked_at.is_some(),
        }));
    }
    d
}

/// Recounts the campaign's recipients and corrects its counters when they disagree, on
/// condition nothing was counted meanwhile. Returns whether it corrected them.
async fn recount(app: &App, c: &Campaign) -> Result<bool, SendError> {
    let seen = app.db.counter_items(&c.id).await?;
    let Some(c) = app.db.get_campaign(&c.id).await? else { return Ok(false) };
    let truth = recounted(&app.db.all_recipients(&c).await?);
    let delta = truth.minus(Counters::of(&c));
    if delta.is_zero() {
        return Ok(false);
    }
    match app.db.correct_counters(&c.id, &seen, delta).await {
        Ok(()) => {
            tracing::warn!(campaign = %c.id, ?delta, "counters corrected from a recount of the recipients");
            Ok(true)
        }
        // Something was counted meanwhile: the next pass recounts.
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
