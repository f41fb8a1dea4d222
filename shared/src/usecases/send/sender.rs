//! The sender. For a send job (half a second of the account's pace at most): read its
//! recipients → look whether the account's pace has room within the next second (if not, the
//! job goes back on the queue for when there is, holding nothing) → claim them, each on its
//! own condition (25 to a batch) → take their send slots (when jobs of the same moment took the
//! room first, wait for the next, up to a second in all) → at each slot, check the campaign is
//! still sending (a status read at most 0.7 s before) and POST to WhatsApp → record every
//! outcome, each on condition the job still holds its recipient; the `tally` function counts
//! them from the table's stream.
//! Nothing between the claims and the POSTs can fail without releasing the claims, and no
//! invocation sleeps on slots far ahead: accounts never hold each other's senders.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::field::Empty;
use tracing::{Instrument, info_span};

use super::{Incoming, SendError};
use crate::adapters::store::StoreError;
use crate::adapters::store::sending::{Holder, JobRead, Outcome, Record, Reservation, now_micros};
use crate::adapters::whatsapp::SendOutcome;
use crate::app::App;
use crate::domain::account::Account;
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::daily_cap::{admit, hour_of};
use crate::domain::id::Id;
use crate::domain::now;
use crate::domain::opt_out;
use crate::domain::phone::Phone;
use crate::domain::recipient::{Recipient, RecipientKey, RecipientStatus};
use crate::domain::secret::Secret;
use crate::domain::sending::{
    DispatchJob, ErrorClass, HeaderValues, MAX_ATTEMPTS, MAX_JOB_SIZE, MAX_PAIR_RATE_ATTEMPTS, SLOT_HORIZON, SendJob,
    classify, interval_micros, message_body, nth_slot, pair_rate_delay, passed_slots, retry_delay, send_margin,
};
use crate::domain::template::Template;
use crate::usecases::lifecycle::change_status;
use crate::usecases::statuses::remember_opt_out;

/// How old the campaign's status may be when a message goes out (from the start of the read
/// that saw it sending): a pause or cancel stops every send that has not left within this time
/// after it returned. A send that finds the status older (the store answering slowly) does not
/// go out: its recipient goes back to pending, for a job a moment later.
const STATUS_MAX_AGE: Duration = Duration::from_millis(700);

/// How often an invocation reads the status of the campaigns its jobs send again (one read per
/// campaign at a time, whatever the number of jobs and sends). A reading starts this long
/// after the one before it started, or when that one was answered if later: a send sees a
/// status at most this plus two answers old (the store answering in 0.25 s each, 0.7 s).
const STATUS_REFRESH: Duration = Duration::from_millis(200);

/// The campaign's status as a job's sends see it: when the read it comes from started, and
/// whether the campaign was sending.
type Status = (Instant, bool);

/// A job whose slots would start at most this much later than the horizon waits for them in
/// the invocation (microseconds); a later one goes back to the queue.
const SHORT_WAIT_US: i64 = 500_000;

/// How long in all a job holding its claims waits for room on the pace that others took
/// before it lets go of them: its slots are then at most this plus the horizon ahead.
const MOST_RESERVE_WAIT_US: i64 = 1_000_000;

/// How many new slots a send woken too late for its slot takes before it lets go of its claim.
const LATE_RETAKES: u32 = 2;

/// How long a 130429 (throughput exceeded) holds the whole account back.
const THROUGHPUT_HOLD: Duration = Duration::from_secs(2);
/// A job is not started when less than this (plus a request's timeout) is left before the
/// invocation's deadline: it goes back to the queue.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// What a sender needs of an account, read once per invocation.
struct Sending {
    account: Account,
    token: Secret,
    template: Template,
    /// Until when (unix microseconds) WhatsApp asked this invocation to slow down (130429):
    /// sends of the account due before then go back to pending instead.
    held_until_us: AtomicI64,
}

/// What one invocation reads once and shares between its jobs: accounts, tokens (from Secrets
/// Manager) and templates by (account, template), and each campaign, whose status is read
/// again every [`STATUS_REFRESH`] for as long as the invocation runs ([`Invocation::refresh`]).
#[derive(Default)]
struct Invocation {
    sendings: Mutex<HashMap<(Id, Id), SendingOrWhyNot>>,
    campaigns: Mutex<HashMap<String, Arc<Mutex<Seen>>>>,
    /// Each campaign's status as last read, and when that read started.
    statuses: std::sync::Mutex<HashMap<String, Status>>,
}

/// What the campaign's account needs to send, or why it cannot.
type SendingOrWhyNot = Result<Arc<Sending>, &'static str>;

/// A campaign as last read in full, its status as last read, and when each read started.
#[derive(Default)]
struct Seen {
    at: Option<Instant>,
    campaign: Option<Campaign>,
}

fn fresh(at: Option<Instant>) -> bool {
    at.is_some_and(|at| at.elapsed() <= STATUS_REFRESH)
}

impl Invocation {
    async fn seen(&self, id: &str) -> Arc<Mutex<Seen>> {
        self.campaigns.lock().await.entry(id.to_string()).or_default().clone()
    }

    /// The campaign as read at most [`STATUS_REFRESH`] ago (by this job or another of the
    /// invocation); its status is kept fresh from then on.
    async fn campaign(&self, app: &App, id: &str) -> Result<Option<Campaign>, SendError> {
        let entry = self.seen(id).await;
        // One read at a time per campaign: the jobs waiting for it use its answer.
        let mut seen = entry.lock().await;
        if fresh(seen.at) {
            return Ok(seen.campaign.clone());
        }
        let started = Instant::now();
        seen.campaign = app.db.get_campaign(id).await?;
        seen.at = Some(started);
        let sending = seen.campaign.as_ref().is_some_and(|c| c.status == CampaignStatus::Sending);
        self.note_status(id, (started, sending));
        Ok(seen.campaign.clone())
    }

    /// The campaign's status as last read (by the job's own read of the campaign or by
    /// [`Invocation::refresh`]).
    fn status(&self, id: &str) -> Option<Status> {
        self.statuses.lock().ok()?.get(id).copied()
    }

    fn note_status(&self, id: &str, seen: Status) {
        if let Ok(mut statuses) = self.statuses.lock() {
            let entry = statuses.entry(id.to_string()).or_insert(seen);
            if entry.0 <= seen.0 {
                *entry = seen;
            }
        }
    }

    /// Reads the status of every campaign the invocation's jobs have read, every
    /// [`STATUS_REFRESH`], for as long as the jobs run. Never returns.
    async fn refresh(&self, app: &App) {
        let mut every = tokio::time::interval(STATUS_REFRESH);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // Not those just read (a job's own read of its campaign).
            let recent = |id: &String| self.status(id).is_some_and(|(at, _)| at.elapsed() < STATUS_REFRESH / 2);
            let ids: Vec<String> = self.campaigns.lock().await.keys().filter(|id| !recent(id)).cloned().collect();
            join_all(ids.iter().map(|id| async move {
                let started = Instant::now();
                match app.db.campaign_status(id).await {
                    Ok(status) => self.note_status(id, (started, status == Some(CampaignStatus::Sending))),
                    // The sends see the status grow old and hold back.
                    Err(e) => tracing::warn!(campaign = %id, error = %e, "campaign status could not be read"),
                }
            }))
            .await;
        }
    }

    async fn sending(&self, app: &App, c: &Campaign) -> Result<SendingOrWhyNot, SendError> {
        let key = (c.account_id.clone(), c.template_id.clone());
        if let Some(hit) = self.sendings.lock().await.get(&key) {
            return Ok(hit.clone());
        }
        let (account, token, template) = tokio::join!(
            app.db.get_account(&c.account_id),
            app.tokens.get(&c.account_id),
            app.db.get_template(&c.template_id)
        );
        let entry = match (account?, token?, template?) {
            (Some(account), Some(token), Some(template)) => {
                Ok(Arc::new(Sending { account, token, template, held_until_us: AtomicI64::new(0) }))
            }
            (None, _, _) => Err("the campaign's account was deleted"),
            (_, None, _) => Err("the account has no access token; set it with PUT /api/accounts/{id}, then resume"),
            (_, _, None) => Err("the campaign's template was deleted"),
        };
        self.sendings.lock().await.insert(key, entry.clone());
        Ok(entry)
    }
}

/// Stop sending a campaign, or every campaign of its account.
#[derive(Debug, Clone)]
enum Stop {
    Campaign(String),
    Account(String),
}

/// What became of one claimed recipient.
struct Sent {
    outcome: Outcome,
    /// Put back for a new job of these attempts, this much later.
    retry: Option<(Duration, u32)>,
    stop: Option<Stop>,
}

impl Sent {
    fn done(outcome: Outcome) -> Self {
        Sent { outcome, retry: None, stop: None }
    }

    /// Not sent: back to pending, left for a resume (no retry job).
    fn released(stop: Option<Stop>) -> Self {
        Sent { outcome: Outcome::Released { retry_at: None }, retry: None, stop }
    }

    /// Not sent because the campaign was no longer sending.
    fn paused_out(&self) -> bool {
        matches!(self.outcome, Outcome::Released { retry_at: None }) && self.retry.is_none() && self.stop.is_none()
    }

    /// Not sent: back to pending, owned by a retry job of `attempt` due after `delay`.
    fn retry(delay: Duration, attempt: u32) -> Self {
        let retry_at = chrono::Utc::now().timestamp() + delay.as_secs_f64().ceil() as i64;
        Sent { outcome: Outcome::Released { retry_at: Some(retry_at) }, retry: Some((delay, attempt)), stop: None }
    }
}

/// Handles a batch of send jobs; returns the ids of the messages to deliver again (the
/// `batchItemFailures` of an SQS event).
pub async fn send_batch(app: &App, messages: Vec<Incoming>, deadline: Instant) -> Vec<String> {
    tracing::debug!(jobs = messages.len(), "send batch");
    let invocation = Invocation::default();
    let jobs = join_all(messages.into_iter().map(|m| {
        let invocation = &invocation;
        async move {
            let result = match serde_json::from_str::<SendJob>(&m.body) {
                Ok(job) => {
                    let span = info_span!("send_job", campaign = %job.campaign_id, account = Empty, job = %job.job_id);
                    process(app, invocation, job, deadline).instrument(span).await
                }
                Err(e) => Err(SendError::Malformed(e.to_string())),
            };
            (m.id, result)
        }
    }));
    // The campaigns' statuses are kept fresh beside the jobs, so that no send waits for a read.
    let results = tokio::select! {
        results = jobs => results,
        () = invocation.refresh(app) => Vec::new(),
    };
    let mut failed = Vec::new();
    for (id, result) in results {
        if let Err(e) = result {
            tracing::warn!(message = %id, error = %e, "send job will be delivered again");
            failed.push(id);
        }
    }
    failed
}

/// One send job. Recipients not sent because the campaign is not sending stay pending for a
/// resume.
async fn process(app: &App, inv: &Invocation, job: SendJob, deadline: Instant) -> Result<(), SendError> {
    if job.phones.len() > MAX_JOB_SIZE {
        // Jobs are never this large; split one that is rather than exceed a transaction.
        let jobs: Vec<SendJob> = job
            .phones
            .chunks(MAX_JOB_SIZE)
            .map(|p| SendJob::new(&job.campaign_id, job.run.clone(), p.to_vec(), job.attempt))
            .collect();
        return Ok(app.queue.send_jobs(&jobs, Duration::ZERO).await?);
    }
    if Instant::now() + DEADLINE_MARGIN + app.whatsapp.timeout() > deadline {
        return Ok(app.queue.send_jobs(&[job], Duration::ZERO).await?);
    }
    let campaign = inv.campaign(app, &job.campaign_id).await?;
    let Some(campaign) = campaign else { return Ok(()) };
    tracing::Span::current().record("account", campaign.account_id.as_str());
    // A first-delivery job of a run a resume replaced: the new run queued its recipients again.
    let superseded = job.attempt == 0 && job.run.is_some() && job.run != campaign.dispatch_run;
    if campaign.status != CampaignStatus::Sending || superseded {
        return Ok(());
    }
    let ctx = match inv.sending(app, &campaign).await? {
        Ok(ctx) => ctx,
        Err(reason) => {
            pause_campaign(app, &campaign, reason).await;
            return Ok(());
        }
    };
    let account = opt_out::applies_to(ctx.template.category).then_some(ctx.account.id.as_str());
    let cap = ctx.account.messaging_limit_tier.daily_cap();
    let business = cap.map(|_| ctx.account.business_account_id.as_str());
    // The recipients, and the account's pace (room within the horizon?), read at once.
    let (read, next_slot) = tokio::join!(
        app.db.job_recipients(&campaign, &job.phones, account, business),
        app.db.next_slot(&ctx.account.id)
    );
    let (read, next_slot) = (read?, next_slot?);
    let now_unix = chrono::Utc::now().timestamp();
    let stale_before = now_unix - app.config.stale_claim_seconds();
    let mut plan = plan(&read.recipients, &read.opted_out, &ctx, &campaign, stale_before, now_unix);
    // New people beyond the cap's room as read are not even claimed: they wait for it.
    let mut limit_wait = None;
    if let Some(cap) = cap {
        let phones: Vec<Phone> = plan.to_send.iter().map(|(r, _)| r.phone_number.clone()).collect();
        let room = read.reached.room(cap, hour_of(now_unix));
        let over: HashSet<Phone> = admit(&phones, &read.counted_in, room, hour_of(now_unix)).over.into_iter().collect();
        if !over.is_empty() {
            plan.to_send.retain(|(r, _)| !over.contains(&r.phone_number));
            limit_wait = Some(read.reached.frees_at(hour_of(now_unix)));
        }
    }
    let mut records = plan.records;
    // A resume queues every pending recipient again, those waiting for a retry too. Their
    // retry job may be gone (it came while the campaign was paused, and was dropped): a first
    // delivery that finds them passes them on to a retry job of their own, due when they are
    // (if the old one is still coming, the claims keep the number to one send).
    if job.run.is_some() && !plan.waiting.is_empty() {
        let due = plan.waiting.iter().map(|(_, at)| *at).max().unwrap_or(now_unix);
        let phones = plan.waiting.iter().map(|(r, _)| r.phone_number.clone()).collect();
        let delay = Duration::from_secs((due - now_unix).max(0) as u64);
        app.queue.send_jobs(&[SendJob::new(&campaign.id, None, phones, job.attempt)], delay).await?;
    }
    let mut retries: BTreeMap<(u64, u32), Vec<Phone>> = BTreeMap::new();
    let mut stops = Vec::new();
    let mut paused_out = Vec::new();
    if !plan.to_send.is_empty() {
        let interval = interval_micros(ctx.account.send_rate());
        // Room on the account's pace within the horizon? Read before claiming, so that a job
        // that came early goes back to the queue holding no claims.
        let early = match next_slot {
            Some(next) => next - now_micros() - SLOT_HORIZON.as_micros() as i64,
            None => 0,
        };
        if early > SHORT_WAIT_US {
            tracing::debug!(job = %job.job_id, early_us = early, "early: back to the queue");
            let phones = plan.to_send.iter().map(|(r, _)| r.phone_number.clone()).collect();
            defer(app, &job, phones, early).await?;
        } else {
            // Room opens within a moment: cheaper than a round trip through the queue.
            tokio::time::sleep(Duration::from_micros(early.max(0) as u64)).await;
            let phones: Vec<Phone> = plan.to_send.iter().map(|(r, _)| r.phone_number.clone()).collect();
            let claimed: HashSet<Phone> =
                app.db.claim_recipients(&campaign, &phones, &job.job_id, now_unix).await?.into_iter().collect();
            let mut claimed: Vec<&(&Recipient, Value)> =
                plan.to_send.iter().filter(|(r, _)| claimed.contains(&r.phone_number)).collect();
            // The cap, counted for real now that the claims are held: who is not admitted is
            // let go of (back to pending) and waits.
            if let (Some(cap), Some(business)) = (cap, business) {
                let phones: Vec<Phone> = claimed.iter().map(|(r, _)| r.phone_number.clone()).collect();
                let (go, wait) = admit_under_cap(app, business, cap, &phones, &read, now_unix).await;
                limit_wait = limit_wait.max(wait);
                for (r, _) in claimed.iter().filter(|(r, _)| !go.contains(&r.phone_number)) {
                    let retry_at = wait.is_none().then_some(now_unix + 1);
                    records.push(Record {
                        phone: &r.phone_number,
                        holder: Holder::Job(&job.job_id),
                        outcome: Outcome::Released { retry_at },
                    });
                    if retry_at.is_some() {
                        retries.entry((1000, job.attempt)).or_default().push(r.phone_number.clone());
                    }
                }
                claimed.retain(|(r, _)| go.contains(&r.phone_number));
            }
            // Slots are taken once the claims are held, so that they are still ahead.
            let count = claimed.len() as u64;
            let reservation = match count {
                0 => Reservation::Granted(0),
                _ => match reserve(app, &ctx.account.id, count, interval).await {
                    Ok(reservation) => reservation,
                    Err(e) => {
                        // Nothing was sent: the claims are let go of below, as when busy.
                        tracing::warn!(job = %job.job_id, error = %e, "no send slots; the job is tried again");
                        Reservation::Busy { retry_at: now_micros() + 1_000_000 }
                    }
                },
            };
            // (Fields are computed only when debug events are on.)
            tracing::debug!(
                job = %job.job_id,
                count,
                slot_in_ms = match reservation {
                    Reservation::Granted(first) => (first - now_micros()) / 1000,
                    _ => 0,
                },
                ?reservation,
                "claimed"
            );
            let holder = Holder::Job(&job.job_id);
            match reservation {
                Reservation::Busy { retry_at } => {
                    // Another job took the room meanwhile: let go of the claims, try later.
                    for (r, _) in &claimed {
                        records.push(Record {
                            phone: &r.phone_number,
                            holder,
                            outcome: Outcome::Released { retry_at: None },
                        });
                    }
                    let phones = claimed.iter().map(|(r, _)| r.phone_number.clone()).collect();
                    defer(app, &job, phones, retry_at - now_micros()).await?;
                }
                Reservation::Granted(first) => {
                    let sends = JobSends {
                        app,
                        ctx: &ctx,
                        inv,
                        campaign: &campaign.id,
                        attempt: job.attempt,
                        deadline,
                        interval,
                        retaking: AtomicBool::new(false),
                    };
                    let bodies: Vec<&Value> = claimed.iter().map(|(_, body)| body).collect();
                    let results = sends.all(&bodies, first).await;
                    for ((r, _), sent) in claimed.iter().zip(results) {
                        if sent.paused_out() {
                            paused_out.push(r.phone_number.clone());
                        }
                        if let Some((delay, attempt)) = sent.retry {
                            retries
                                .entry((delay.as_millis() as u64, attempt))
                                .or_default()
                                .push(r.phone_number.clone());
                        }
                        stops.extend(sent.stop);
                        records.push(Record { phone: &r.phone_number, holder, outcome: sent.outcome });
                    }
                }
            }
        }
    }
    if !records.is_empty() {
        let written = app.db.record_outcomes(&campaign, &records, &now()).await;
        if let Err(e) = &written {
            // The claims stay; the reconciler resolves them once they are stale.
            tracing::error!(campaign = %campaign.id, job = %job.job_id, error = %e, "outcomes could not be recorded");
        }
        written?;
    }
    // After the job's own outcomes are counted: a campaign shown waiting for the cap shows the
    // sends that reached it.
    if let Some(until) = limit_wait
        && app.db.wait_for_limit(&campaign.id, until).await?
    {
        // A new run waits for the room; the jobs of the old one queued meanwhile do nothing.
        tracing::info!(campaign = %campaign.id, until, "the business's 24-hour cap is reached: waiting for room");
        let run = app.db.new_dispatch_run(&campaign.id).await?;
        app.queue.dispatch(&DispatchJob::start(&campaign.id, Some(run)), Duration::ZERO).await?;
    }
    for ((delay_ms, attempt), phones) in retries {
        // A retry carries no run: its recipients wait for it (`retry_at`), so no resume may
        // drop it, whatever the attempt (a late wake-up retries at the same attempt).
        let retry = SendJob::new(&campaign.id, None, phones, attempt);
        app.queue.send_jobs(&[retry], Duration::from_millis(delay_ms)).await?;
    }
    if !paused_out.is_empty() {
        hand_on_after_resume(app, &campaign.id, paused_out).await?;
    }
    if let Some(stop) = stops.into_iter().next() {
        match stop {
            Stop::Campaign(reason) => pause_campaign(app, &campaign, &reason).await,
            Stop::Account(reason) => pause_account(app, &campaign.account_id, &reason).await?,
        }
    }
    // The outcomes are counted from the table's stream, which completes the campaign
    // (`usecases::tally`).
    Ok(())
}

/// Counts the claimed numbers under the business's 24-hour cap: which of them go now, and
/// until when the others wait (none: the store failed; they are tried again in a moment).
async fn admit_under_cap(
    app: &App,
    business: &str,
    cap: u64,
    phones: &[Phone],
    read: &JobRead,
    now_unix: i64,
) -> (HashSet<Phone>, Option<i64>) {
    let admitted =
        app.db.admit_under_cap(business, phones, &read.counted_in, read.reached.clone(), cap, now_unix).await;
    let (admitted, reached) = match admitted {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(business, error = %e, "the 24-hour cap could not be counted; the job is tried again");
            return (HashSet::new(), None);
        }
    };
    if admitted.writes()
        && let Err(e) = app.db.note_contacts(business, admitted.counted(), now_unix).await
    {
        // They stay counted in the buckets; messaged again, they would count once more.
        tracing::warn!(business, error = %e, "the people reached could not be noted");
    }
    let wait = (!admitted.over.is_empty()).then(|| reached.frees_at(hour_of(now_unix)));
    (admitted.go.into_iter().collect(), wait)
}

/// Recipients this job held when it saw the campaign paused went back to pending, for a resume
/// to send. A resume that came before they were back found them still held, and its dispatch
/// passed them by: if the campaign is sending again now, they get a job of the current run.
/// (A resume after this read dispatches them itself: they are pending by then.)
async fn hand_on_after_resume(app: &App, campaign_id: &Id, phones: Vec<Phone>) -> Result<(), SendError> {
    let Some(now) = app.db.get_campaign(campaign_id).await? else { return Ok(()) };
    if now.status == CampaignStatus::Sending {
        tracing::info!(campaign = %campaign_id, count = phones.len(), "resumed meanwhile: handing released recipients on");
        app.queue.send_jobs(&[SendJob::new(campaign_id, now.dispatch_run, phones, 0)], Duration::ZERO).await?;
    }
    Ok(())
}

/// Takes `count` send slots of the account within the horizon. When another job took the room
/// since the job looked (its claims are held by now), and room opens within a moment, it waits
/// for it and asks again rather than let go of its claims and go round the queue (two writes,
/// and a second or more in the queue, SQS delays being whole seconds: a gap in the pace). Jobs
/// queued together look together, so several may wait for the same room; each one that loses
/// it waits for the next, for at most [`MOST_RESERVE_WAIT_US`] in all.
async fn reserve(app: &App, account_id: &str, count: u64, interval: u64) -> Result<Reservation, StoreError> {
    let give_up_at = now_micros() + MOST_RESERVE_WAIT_US;
    loop {
        let reservation = app.db.reserve_slots(account_id, count, interval, SLOT_HORIZON).await?;
        match reservation {
            Reservation::Busy { retry_at } if retry_at - now_micros() <= SHORT_WAIT_US && retry_at <= give_up_at => {
                tokio::time::sleep(Duration::from_micros((retry_at - now_micros()).max(0) as u64)).await;
            }
            other => return Ok(other),
        }
    }
}

/// Puts (part of) a job back on the queue for when the account's pace has room: `early_us`
/// from now, in whole seconds rounded down (SQS delays whole seconds), so that it is back in
/// time; what is left of the wait it spends in the invocation, or goes round again.
async fn defer(app: &App, job: &SendJob, phones: Vec<Phone>, early_us: i64) -> Result<(), SendError> {
    let wait = (early_us.max(0) / 1_000_000).max(1) as u64;
    Ok(app.queue.send_jobs(&[SendJob { phones, ..job.clone() }], Duration::from_secs(wait)).await?)
}

/// What to do with a job's recipients as stored: outcomes to record without a request, and
/// the recipients to send with their message bodies.
struct Plan<'a> {
    records: Vec<Record<'a>>,
    to_send: Vec<(&'a Recipient, Value)>,
    /// Pending recipients a retry job owns until `retry_at` (unix seconds): left alone now.
    waiting: Vec<(&'a Recipient, i64)>,
}

fn plan<'a>(
    stored: &'a [Recipient],
    opted_out: &HashSet<Phone>,
    ctx: &Sending,
    campaign: &Campaign,
    stale_before: i64,
    now_unix: i64,
) -> Plan<'a> {
    let mut records = Vec::new();
    let mut to_send = Vec::new();
    let mut waiting = Vec::new();
    for r in stored {
        let failed = |code, message: String| Record {
            phone: &r.phone_number,
            holder: Holder::Unclaimed,
            outcome: Outcome::Failed { code, message },
        };
        match r.status {
            // Owned by a delayed retry job until then.
            RecipientStatus::Pending if r.retry_at.is_some_and(|at| at > now_unix + 1) => {
                waiting.push((r, r.retry_at.unwrap_or(now_unix)))
            }
            // Marketing templates never go to numbers that opted out of the account's
            // marketing messages: they fail with 131050 without a request.
            RecipientStatus::Pending if opted_out.contains(&r.phone_number) => {
                records.push(failed(Some(opt_out::OPTED_OUT_CODE), opt_out::not_sent()))
            }
            // Outside their send window (it closed since the dispatch): left for the next run.
            RecipientStatus::Pending if outside_window(campaign, ctx, r) => {}
            RecipientStatus::Pending => {
                let callback = RecipientKey::of(r).callback();
                let values = HeaderValues::of(campaign);
                match message_body(&ctx.template, &campaign.variable_mapping, values, r, &callback) {
                    Ok(body) => to_send.push((r, body)),
                    Err(unsendable) => records.push(failed(Some(131008), unsendable.to_string())),
                }
            }
            // Claimed by a sender that is gone (its claim is older than any sender runs): its
            // request may have reached WhatsApp, so it is never sent again.
            RecipientStatus::Sending => {
                if let (Some(job), Some(at)) = (r.claim_id.as_deref(), r.claimed_at)
                    && at < stale_before
                {
                    records.push(Record {
                        phone: &r.phone_number,
                        holder: Holder::Stale { job, claimed_at: at },
                        outcome: Outcome::Failed { code: None, message: STALE_CLAIM.into() },
                    });
                }
            }
            _ => {}
        }
    }
    Plan { records, to_send, waiting }
}

/// Whether the recipient's send window is closed now.
fn outside_window(campaign: &Campaign, ctx: &Sending, r: &Recipient) -> bool {
    campaign
        .send_window
        .as_ref()
        .is_some_and(|w| w.opens_at(w.zone_of(r, ctx.account.default_timezone), chrono::Utc::now()).is_some())
}

/// The outcome of a claim left by a sender that is gone.
pub(crate) const STALE_CLAIM: &str =
    "outcome unknown: the sender stopped between claiming and recording; not sent again";

/// The sends of one job: what each needs besides its message and slot.
struct JobSends<'a> {
    app: &'a App,
    ctx: &'a Sending,
    /// Where the campaign's status is kept fresh, and the campaign.
    inv: &'a Invocation,
    campaign: &'a str,
    attempt: u32,
    deadline: Instant,
    /// The spacing of the account's slots ([`interval_micros`]).
    interval: u64,
    /// Whether one of the job's sends is taking a new slot: the others woken too late
    /// meanwhile go back to pending instead (a burst of late wake-ups, one write each on the
    /// pace item, would slow the store further just when it is slow).
    retaking: AtomicBool,
}

impl JobSends<'_> {
    /// Sends the job's claimed recipients (their bodies, in order) at the slots reserved from
    /// `first`. Those whose slot the time has passed already (the reservation's answer came
    /// late) take slots at the end of the account's pace instead, all in one request; the
    /// others go at theirs meanwhile, not after that request's answer.
    async fn all(&self, bodies: &[&Value], first: i64) -> Vec<Sent> {
        let interval = self.interval;
        let behind = passed_slots(first, bodies.len(), interval, now_micros());
        let (passed, ahead) = bodies.split_at(behind);
        let on_time =
            join_all(ahead.iter().enumerate().map(|(i, body)| self.one(body, nth_slot(first, behind + i, interval))));
        let again = async {
            if passed.is_empty() {
                return Vec::new();
            }
            tracing::debug!(behind, "slots passed before the reservation's answer came");
            let account = &self.ctx.account.id;
            match self.app.db.reserve_slots(account, behind as u64, interval, SLOT_HORIZON).await {
                Ok(Reservation::Granted(next)) => {
                    join_all(passed.iter().enumerate().map(|(i, body)| self.one(body, nth_slot(next, i, interval))))
                        .await
                }
                // No room after all: they go back to pending, for a job a moment later.
                _ => passed.iter().map(|_| Sent::retry(Duration::ZERO, self.attempt)).collect(),
            }
        };
        let (mut sent, on_time) = tokio::join!(again, on_time);
        sent.extend(on_time);
        sent
    }

    /// Sends one claimed recipient at its slot. Never fails: whatever stops it before the POST
    /// releases the claim (the recipient goes back to pending).
    async fn one(&self, body: &Value, slot: i64) -> Sent {
        let JobSends { app, ctx, attempt, deadline, interval, .. } = *self;
        let mut slot = slot;
        let (early, most_late) = send_margin(interval);
        for retake in 0..=LATE_RETAKES {
            let wait = Duration::from_micros((slot - early - now_micros()).max(0) as u64);
            if Instant::now() + wait + app.whatsapp.timeout() > deadline {
                return Sent::retry(Duration::ZERO, attempt);
            }
            tokio::time::sleep(wait).await;
            let late = now_micros() - slot;
            if late <= most_late {
                break;
            }
            // Woken too late (a slow store or a busy machine): sending now could crowd the
            // slots after it. The slot stays unused; the claim is kept and a new slot taken
            // (one write on the pace item, where letting go and claiming again would take
            // three), or, after a few or while another send of the job is taking one, the
            // recipient goes back to pending for a job a moment later.
            tracing::debug!(late_us = late, retake, "woken too late for the slot");
            if retake == LATE_RETAKES || self.retaking.swap(true, Ordering::AcqRel) {
                return Sent::retry(Duration::ZERO, attempt);
            }
            let taken = app.db.reserve_slots(&ctx.account.id, 1, interval, SLOT_HORIZON).await;
            self.retaking.store(false, Ordering::Release);
            match taken {
                Ok(Reservation::Granted(next)) => slot = next,
                _ => return Sent::retry(Duration::ZERO, attempt),
            }
        }
        self.post(body, slot).await
    }

    /// Sends one recipient now, at `slot`'s time, unless the account is held back or the
    /// campaign is no longer sending (or its status was not read lately).
    async fn post(&self, body: &Value, slot: i64) -> Sent {
        let JobSends { app, ctx, inv, campaign, attempt, .. } = *self;
        let held = ctx.held_until_us.load(Ordering::Relaxed) - now_micros();
        if held > 0 {
            return Sent::retry(Duration::from_micros(held as u64), attempt);
        }
        let Some((read_at, sending)) = inv.status(campaign) else {
            return Sent::retry(Duration::from_secs(1), attempt);
        };
        if !sending {
            return Sent::released(None); // paused, cancelled or deleted meanwhile
        }
        if read_at.elapsed() > STATUS_MAX_AGE {
            tracing::debug!(age_ms = read_at.elapsed().as_millis() as u64, "status too old to send");
            return Sent::retry(Duration::from_secs(1), attempt);
        }
        let lag_ms = (now_micros() - slot) as f64 / 1000.0;
        let outcome = app.whatsapp.send(&ctx.account.phone_number_id, &ctx.token, body).await;
        app.metrics.message(&ctx.account.id, &outcome, lag_ms);
        let (code, message) = match outcome {
            SendOutcome::Accepted { wamid } => return Sent::done(Outcome::Sent { wamid }),
            SendOutcome::Unknown { message } => {
                // WhatsApp may have taken it: never send it again.
                let message = format!("outcome unknown, not retried to avoid a double send: {message}");
                return Sent::done(Outcome::Failed { code: None, message });
            }
            SendOutcome::Unreachable { message } => (None, message),
            SendOutcome::Rejected { code, message } => (Some(code), message),
        };
        let this = attempt + 1;
        let described = format!("WhatsApp error {}: {message}", code.map(|c| c.to_string()).unwrap_or("(none)".into()));
        match code.map(classify).unwrap_or(ErrorClass::Transient) {
            ErrorClass::Permanent => {
                if opt_out::is_opt_out(code) {
                    let phone = body["to"].as_str().unwrap_or_default();
                    if let Err(e) = remember_opt_out(app, &ctx.account.id, phone).await {
                        tracing::warn!(account = %ctx.account.id, error = %e, "the opt-out could not be stored");
                    }
                }
                Sent::done(Outcome::Failed { code, message })
            }
            ErrorClass::Campaign => Sent::released(Some(Stop::Campaign(described))),
            ErrorClass::Account => Sent::released(Some(Stop::Account(described))),
            ErrorClass::PairRate if this <= MAX_PAIR_RATE_ATTEMPTS => Sent::retry(pair_rate_delay(this), this),
            ErrorClass::Throughput | ErrorClass::Transient if this < MAX_ATTEMPTS => {
                if code == Some(130429) {
                    tracing::warn!(account = %ctx.account.id, "throughput limit hit (130429): holding the account back");
                    let until = now_micros() + THROUGHPUT_HOLD.as_micros() as i64;
                    ctx.held_until_us.fetch_max(until, Ordering::Relaxed);
                    if let Err(e) = app.db.hold_account(&ctx.account.id, until).await {
                        tracing::warn!(account = %ctx.account.id, error = %e, "the account could not be held back");
                    }
                }
                Sent::retry(retry_delay(this, crate::domain::retry::random_unit()), this)
            }
            ErrorClass::PairRate | ErrorClass::Throughput | ErrorClass::Transient => {
                Sent::done(Outcome::Failed { code, message: format!("{message} (after {this} attempts)") })
            }
        }
    }
}

async fn pause_campaign(app: &App, campaign: &Campaign, reason: &str) {
    tracing::warn!(campaign = %campaign.id, reason, "pausing the campaign");
    // Losing the race to a person's pause or cancel is fine.
    let _ = change_status(app, campaign, Action::Pause, Some(reason)).await;
}

async fn pause_account(app: &App, account_id: &str, reason: &str) -> Result<(), SendError> {
    for c in app.db.sending_campaigns(account_id).await? {
        pause_campaign(app, &c, reason).await;
    }
    Ok(())
}
