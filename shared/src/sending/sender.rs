//! The sender: for each recipient of a send job — campaign still sending? → claim it with a
//! conditional write → take a slot from the account's pace → render → POST to WhatsApp →
//! record the outcome; then count the job's outcomes into the campaign exactly once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Mutex;

use super::{Incoming, SendError, complete_if_done};
use crate::api::App;
use crate::delivery::OPTED_OUT_CODE;
use crate::domain::account::Account;
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::now;
use crate::domain::recipient::{Recipient, RecipientStatus};
use crate::domain::sending::{
    ErrorClass, MAX_ATTEMPTS, MAX_PAIR_RATE_ATTEMPTS, SendJob, backoff, classify, interval_micros, message_body,
    pace_chunk, pair_rate_delay, random_unit,
};
use crate::domain::template::{Category, Template};
use crate::secrets::Secret;
use crate::store::sending::{Outcome, now_micros};
use crate::whatsapp::{REQUEST_TIMEOUT, SendOutcome};

/// Slots a message may retake after waking up late before it is sent late anyway.
const MAX_SLOT_RETAKES: u32 = 2;

/// How late a message may go out after its slot: half an interval keeps any 1-second window
/// at rate + 1; at high rates (intervals of a few ms) timers cannot be that exact, and 25 ms
/// of lateness stays within the one-second burst the pace allows.
fn late_tolerance(interval_us: i64) -> i64 {
    (interval_us / 2).max(25_000)
}

/// How long a 130429 (throughput exceeded) holds the whole account back.
const THROUGHPUT_PENALTY: Duration = Duration::from_secs(2);
/// Work is not started when less than this is left before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(15);

/// What a sender needs of an account, read once per invocation.
struct Sending {
    account: Account,
    token: Secret,
    template: Template,
}

/// Accounts, tokens (from Secrets Manager) and templates read once per invocation, keyed by
/// (account, template); the reason the campaign cannot be sent when one of them is missing.
#[derive(Default)]
struct Cache {
    entries: Mutex<HashMap<CacheKey, Result<Arc<Sending>, &'static str>>>,
}

type CacheKey = (String, String);

impl Cache {
    async fn get(&self, app: &App, c: &Campaign) -> Result<Result<Arc<Sending>, &'static str>, SendError> {
        let key = (c.account_id.clone(), c.template_id.clone());
        if let Some(hit) = self.entries.lock().await.get(&key) {
            return Ok(hit.clone());
        }
        let (account, token, template) = tokio::join!(
            app.db.get_account(&c.account_id),
            app.tokens.get(&c.account_id),
            app.db.get_template(&c.template_id)
        );
        let entry = match (account?, token?, template?) {
            (Some(account), Some(token), Some(template)) => Ok(Arc::new(Sending { account, token, template })),
            (None, _, _) => Err("the campaign's account was deleted"),
            (_, None, _) => Err("the account has no access token; set it with PUT /api/accounts/{id}, then resume"),
            (_, _, None) => Err("the campaign's template was deleted"),
        };
        self.entries.lock().await.insert(key, entry.clone());
        Ok(entry)
    }
}

/// What happened to one claimed recipient.
enum Sent {
    /// Recorded (sent or failed), or released back to pending.
    Done,
    /// Not sent in time: back to pending, to be put in a new job.
    Requeue(String),
    /// Stop the campaign: the template or campaign cannot be sent.
    PauseCampaign(String),
    /// Stop every campaign of the account: it cannot send.
    PauseAccount(String),
}

/// Handles a batch of send jobs; returns the ids of the messages to deliver again (the
/// `batchItemFailures` of an SQS event).
pub async fn send_batch(app: &App, messages: Vec<Incoming>, deadline: Instant) -> Vec<String> {
    let cache = Cache::default();
    let results = join_all(messages.into_iter().map(|m| {
        let cache = &cache;
        async move {
            let result = match serde_json::from_str::<SendJob>(&m.body) {
                Ok(job) => process(app, cache, job, deadline).await,
                Err(e) => Err(SendError::Malformed(e.to_string())),
            };
            (m.id, result)
        }
    }))
    .await;
    let mut failed = Vec::new();
    let mut campaigns = HashSet::new();
    for (id, result) in results {
        match result {
            Ok(campaign) => {
                campaigns.insert(campaign);
            }
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "send job will be delivered again");
                failed.push(id);
            }
        }
    }
    for c in campaigns.into_iter().flatten() {
        if let Err(e) = complete_if_done(app, &c).await {
            tracing::warn!(campaign = %c, error = %e, "completion check failed; the next batch repeats it");
        }
    }
    failed
}

/// One send job. Returns the campaign id when the job is done (even when the campaign was not
/// sending: its recipients stay pending for a resume).
async fn process(app: &App, cache: &Cache, job: SendJob, deadline: Instant) -> Result<Option<String>, SendError> {
    let mut remaining: VecDeque<String> = job.phones.iter().cloned().collect();
    let mut unclaimed = Vec::new();
    let mut requeue = Vec::new();
    while !remaining.is_empty() {
        if Instant::now() + DEADLINE_MARGIN > deadline {
            requeue.extend(remaining.drain(..));
            break;
        }
        let Some(campaign) = app.db.get_campaign(&job.campaign_id).await? else { return Ok(None) };
        if campaign.status != CampaignStatus::Sending {
            break; // paused or cancelled: the rest stays pending
        }
        let ctx = match cache.get(app, &campaign).await? {
            Ok(ctx) => ctx,
            Err(reason) => {
                pause_campaign(app, &campaign, reason).await;
                break;
            }
        };
        let rate = ctx.account.send_rate();
        let chunk: Vec<String> = remaining.drain(..pace_chunk(rate).min(remaining.len())).collect();
        let stamp = chrono::Utc::now().timestamp();
        let claims = join_all(chunk.iter().map(|p| app.db.claim(&campaign.id, p, &job.job_id, stamp))).await;
        let mut claimed = Vec::new();
        for (phone, claim) in chunk.into_iter().zip(claims) {
            match claim? {
                Some(r) => claimed.push(r),
                None => unclaimed.push(phone),
            }
        }
        let tally = uuid::Uuid::new_v4().to_string();
        let (claimed, withheld) =
            withhold_opted_out(app, &ctx, &campaign.id, claimed, Claim { job: &job, tally: &tally }).await?;
        if claimed.is_empty() {
            count(app, &job.campaign_id, &withheld).await?;
            continue;
        }
        let interval = interval_micros(rate);
        let start = app.db.reserve_slots(&ctx.account.id, claimed.len() as u64, interval).await?;
        let sends = claimed.iter().enumerate().map(|(i, r)| {
            let slot = start + (i as u64 * interval) as i64;
            send_one(app, &ctx, &campaign, r, Claim { job: &job, tally: &tally }, slot, deadline)
        });
        let mut stop = None;
        let outcomes = join_all(sends).await;
        // Counted per chunk (a few times a second at most), so counters follow the sending.
        let chunk_phones: Vec<String> = claimed.iter().map(|r| r.phone_number.clone()).chain(withheld).collect();
        count(app, &job.campaign_id, &chunk_phones).await?;
        for outcome in outcomes {
            match outcome? {
                Sent::Done => {}
                Sent::Requeue(phone) => requeue.push(phone),
                Sent::PauseCampaign(reason) => stop = Some((false, reason)),
                Sent::PauseAccount(reason) => stop = Some((true, reason)),
            }
        }
        if let Some((account_wide, reason)) = stop {
            if account_wide {
                pause_account(app, &campaign.account_id, &reason).await?;
            } else {
                pause_campaign(app, &campaign, &reason).await;
            }
            break;
        }
    }
    if !requeue.is_empty() {
        let next = SendJob { job_id: uuid::Uuid::new_v4().to_string(), phones: requeue, ..job.clone() };
        app.queue.send_jobs(&[next], Duration::ZERO).await?;
    }
    let busy = resolve_unclaimed(app, &job, &unclaimed).await?;
    // Whatever is processed but not counted yet: resolved claims, or the work of an earlier
    // delivery of this job that stopped before counting.
    count(app, &job.campaign_id, &job.phones).await?;
    if busy {
        return Err(SendError::Busy);
    }
    Ok(Some(job.campaign_id))
}

/// Sends one claimed recipient at its slot, retrying transient errors on new slots.
/// The claim a sender holds on a recipient: its job, and the tally that will count it.
#[derive(Clone, Copy)]
struct Claim<'a> {
    job: &'a SendJob,
    tally: &'a str,
}

async fn send_one(
    app: &App,
    ctx: &Sending,
    campaign: &Campaign,
    r: &Recipient,
    claim: Claim<'_>,
    mut slot: i64,
    deadline: Instant,
) -> Result<Sent, SendError> {
    let job = claim.job;
    let record = |outcome: Outcome| async move {
        app.db.record(&campaign.id, &r.phone_number, &job.job_id, &outcome, claim.tally, &now()).await
    };
    let callback = format!("{}/{}", campaign.id, r.phone_number);
    let body = match message_body(&ctx.template, &campaign.variable_mapping, r, &callback) {
        Ok(b) => b,
        Err(missing) => {
            let message = format!("the recipient has no value for '{}', which the variable_mapping needs", missing.0);
            record(Outcome::Failed { code: Some(131008), message }).await?;
            return Ok(Sent::Done);
        }
    };
    let mut attempt = 0;
    let mut retakes = 0;
    loop {
        attempt += 1;
        let wait = Duration::from_micros((slot - now_micros()).max(0) as u64);
        if Instant::now() + wait + REQUEST_TIMEOUT + DEADLINE_MARGIN > deadline {
            record(Outcome::Released).await?;
            return Ok(Sent::Requeue(r.phone_number.clone()));
        }
        tokio::time::sleep(wait).await;
        let interval = interval_micros(ctx.account.send_rate()) as i64;
        if now_micros() > slot + late_tolerance(interval) && retakes < MAX_SLOT_RETAKES {
            // Woken too late (a slow store or a busy machine): sending now could crowd the
            // next slots, so take a new one — a few times at most, since every retake leaves
            // a slot unused.
            slot = app.db.reserve_slots(&ctx.account.id, 1, interval as u64).await?;
            retakes += 1;
            attempt -= 1;
            continue;
        }
        let outcome = app.whatsapp.send(&ctx.account.phone_number_id, &ctx.token, &body).await;
        let (code, message) = match outcome {
            SendOutcome::Accepted { wamid } => {
                record(Outcome::Sent { wamid }).await?;
                return Ok(Sent::Done);
            }
            SendOutcome::Unknown { message } => {
                // WhatsApp may have taken it: never send it again.
                let message = format!("outcome unknown, not retried to avoid a double send: {message}");
                record(Outcome::Failed { code: None, message }).await?;
                return Ok(Sent::Done);
            }
            SendOutcome::Unreachable { message } => (None, message),
            SendOutcome::Rejected { code, message } => (Some(code), message),
        };
        let class = code.map(classify).unwrap_or(ErrorClass::Transient);
        let described = format!("WhatsApp error {}: {message}", code.map(|c| c.to_string()).unwrap_or("(none)".into()));
        match class {
            ErrorClass::Permanent => {
                if code == Some(OPTED_OUT_CODE) {
                    let reason = "a message failed with 131050 (the person stopped marketing messages)";
                    app.db.set_opt_out(&ctx.account.id, &r.phone_number, true, reason, &now()).await?;
                }
                record(Outcome::Failed { code, message }).await?;
                return Ok(Sent::Done);
            }
            ErrorClass::Campaign => {
                record(Outcome::Released).await?;
                return Ok(Sent::PauseCampaign(described));
            }
            ErrorClass::Account => {
                record(Outcome::Released).await?;
                return Ok(Sent::PauseAccount(described));
            }
            ErrorClass::PairRate => {
                let next = job.attempt + 1;
                if next > MAX_PAIR_RATE_ATTEMPTS {
                    record(Outcome::Failed { code, message }).await?;
                } else if record(Outcome::Released).await? {
                    let retry = SendJob {
                        job_id: uuid::Uuid::new_v4().to_string(),
                        campaign_id: campaign.id.clone(),
                        phones: vec![r.phone_number.clone()],
                        attempt: next,
                    };
                    app.queue.send_jobs(&[retry], pair_rate_delay(next)).await?;
                }
                return Ok(Sent::Done);
            }
            ErrorClass::Throughput | ErrorClass::Transient if attempt < MAX_ATTEMPTS => {
                if class == ErrorClass::Throughput {
                    tracing::warn!(account = %ctx.account.id, "throughput limit hit (130429): holding the account back");
                    app.db.reserve_slots(&ctx.account.id, 1, THROUGHPUT_PENALTY.as_micros() as u64).await?;
                }
                tokio::time::sleep(backoff(attempt, random_unit())).await;
                slot = app.db.reserve_slots(&ctx.account.id, 1, interval_micros(ctx.account.send_rate())).await?;
            }
            ErrorClass::Throughput | ErrorClass::Transient => {
                let message = format!("{message} (after {attempt} attempts)");
                record(Outcome::Failed { code, message }).await?;
                return Ok(Sent::Done);
            }
        }
    }
}

/// Marketing templates are never sent to numbers that opted out of the account's marketing
/// messages: those recipients fail with 131050 without a request. Returns the recipients to
/// send and the numbers withheld.
async fn withhold_opted_out(
    app: &App,
    ctx: &Sending,
    campaign_id: &str,
    claimed: Vec<Recipient>,
    claim: Claim<'_>,
) -> Result<(Vec<Recipient>, Vec<String>), SendError> {
    if ctx.template.category != Category::Marketing || claimed.is_empty() {
        return Ok((claimed, Vec::new()));
    }
    let phones: Vec<&str> = claimed.iter().map(|r| r.phone_number.as_str()).collect();
    let opted_out = app.db.opted_out(&ctx.account.id, &phones).await?;
    let (withheld, send): (Vec<Recipient>, Vec<Recipient>) =
        claimed.into_iter().partition(|r| opted_out.contains(&r.phone_number));
    for r in &withheld {
        let message = "not sent: the person opted out of this account's marketing messages".to_string();
        let outcome = Outcome::Failed { code: Some(OPTED_OUT_CODE), message };
        app.db.record(campaign_id, &r.phone_number, &claim.job.job_id, &outcome, claim.tally, &now()).await?;
    }
    Ok((send, withheld.into_iter().map(|r| r.phone_number).collect()))
}

/// Recipients of the job that could not be claimed: already processed (nothing to do),
/// claimed by a sender that is gone (its claim is older than any sender runs: the outcome is
/// unknown, record it as failed without sending), or claimed by a sender still at work
/// (returns true: deliver the job again later, when that is settled).
async fn resolve_unclaimed(app: &App, job: &SendJob, phones: &[String]) -> Result<bool, SendError> {
    if phones.is_empty() {
        return Ok(false);
    }
    let stale_before = chrono::Utc::now().timestamp() - app.config.stale_claim_seconds;
    let tally = uuid::Uuid::new_v4().to_string();
    let mut busy = false;
    for r in app.db.recipients(&job.campaign_id, phones).await? {
        let (Some(holder), Some(at)) = (&r.claim_id, r.claimed_at) else { continue };
        if r.status != RecipientStatus::Sending {
            continue;
        }
        if at >= stale_before {
            busy = true;
            continue;
        }
        let message = "outcome unknown: the sender stopped between claiming and recording; not sent again".to_string();
        let outcome = Outcome::Failed { code: None, message };
        app.db.record(&job.campaign_id, &r.phone_number, holder, &outcome, &tally, &now()).await?;
    }
    Ok(busy)
}

/// Adds the recorded outcomes among `phones` that are not counted yet to the campaign's
/// counters (see [`crate::store::Db::apply_tallies`]); whoever adds the last ones completes
/// the campaign.
async fn count(app: &App, campaign_id: &str, phones: &[String]) -> Result<(), SendError> {
    let recipients = app.db.recipients(campaign_id, phones).await?;
    if app.db.apply_tallies(campaign_id, &recipients).await? {
        complete_if_done(app, campaign_id).await?;
    }
    Ok(())
}

async fn pause_campaign(app: &App, campaign: &Campaign, reason: &str) {
    tracing::warn!(campaign = %campaign.id, reason, "pausing the campaign");
    // Losing the race to a person's pause or cancel is fine.
    let _ = app.change_status(campaign, Action::Pause, Some(reason)).await;
}

async fn pause_account(app: &App, account_id: &str, reason: &str) -> Result<(), SendError> {
    for c in app.db.sending_campaigns(account_id).await? {
        pause_campaign(app, &c, reason).await;
    }
    Ok(())
}
