//! `POST /retry-failed`: a completed or paused campaign's recipients that failed for a reason
//! that may pass ([`crate::domain::sending::retryable`]) go back to pending and are sent again
//! — at once for a completed campaign (it is sending again), on resume for a paused one.
//!
//! Each recipient is put back only while it is still the failure that was read (a
//! conditional write with the counters it leaves, see
//! [`crate::adapters::store::Db::requeue_failed`]), so two calls never put one back twice
//! and every number is sent at most once per retry. A campaign with more failures than one
//! call gets through before its deadline answers `complete: false`: the next call goes on.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::adapters::store::{Start, StoreError};
use crate::app::App;
use crate::domain::Timestamp;
use crate::domain::campaign::{Action, Campaign, CampaignStatus};
use crate::domain::id::Id;
use crate::domain::recipient::{Recipient, RecipientStatus};
use crate::domain::sending::retryable;
use crate::error::{AppError, AppResult};
use crate::usecases::campaigns::{load, wrong_status};
use crate::usecases::lifecycle::{change_status, dispatch};

/// How long one call puts recipients back before it answers (an API answer is due in 29 s).
const DEADLINE: Duration = Duration::from_secs(20);
/// Failed recipients read per page.
const PAGE: u32 = 100;

/// What a retry did.
#[derive(Debug, Serialize)]
pub struct Retried {
    /// Recipients put back to pending.
    pub requeued: usize,
    /// Recipients that failed with Meta's per-user marketing limit and must wait until their
    /// `retry_after` (not put back by this call).
    pub waiting: usize,
    /// The earliest `retry_after` of those waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<Timestamp>,
    /// Whether every failed recipient was looked at (false: the call ran out of time; call it
    /// again).
    pub complete: bool,
    pub campaign: Campaign,
}

/// Which failures a retry takes: every retryable one, or only those with one of `codes`.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub codes: Option<Vec<i64>>,
}

impl Selection {
    /// Refuses codes that are never retried (a 422 naming them).
    pub fn checked(codes: Option<Vec<i64>>) -> AppResult<Self> {
        if let Some(codes) = &codes {
            if codes.is_empty() {
                return Err(AppError::invalid("codes must name at least one error code (or be left out)"));
            }
            let refused: Vec<String> = codes.iter().filter(|c| !retryable(Some(**c))).map(i64::to_string).collect();
            if !refused.is_empty() {
                return Err(AppError::invalid(format!(
                    "codes: {} never retried: permanent refusals (such as 131026 undeliverable or 131050 \
                     opted out) and campaign or account errors stay failed",
                    if refused.len() == 1 {
                        format!("{} is", refused[0])
                    } else {
                        format!("{} are", refused.join(", "))
                    }
                )));
            }
        }
        Ok(Selection { codes })
    }

    fn takes(&self, r: &Recipient) -> bool {
        retryable(r.error_code)
            && self.codes.as_ref().is_none_or(|codes| r.error_code.is_some_and(|c| codes.contains(&c)))
    }
}

pub async fn retry_failed(app: &App, id: &Id, selection: &Selection) -> AppResult<Retried> {
    let campaign = load(app, id).await?;
    if !matches!(campaign.status, CampaignStatus::Completed | CampaignStatus::Paused) {
        return Err(wrong_status(
            &campaign,
            "only completed or paused campaigns can send their failed recipients again",
        ));
    }
    let deadline = Instant::now() + DEADLINE;
    let now = crate::domain::now();
    let (mut requeued, mut waiting, mut next_retry_at) = (0, 0, None::<Timestamp>);
    let mut start = Start::Page(1);
    let complete = loop {
        let page = app
            .db
            .list_recipients(&campaign, Some(RecipientStatus::Failed), start, PAGE)
            .await
            .map_err(app.store_err("could not read the failed recipients"))?;
        let mut chosen = Vec::new();
        for r in page.items.iter().filter(|r| selection.takes(r)) {
            match r.retry_after() {
                Some(at) if at > now => {
                    waiting += 1;
                    if next_retry_at.as_ref().is_none_or(|n| at < *n) {
                        next_retry_at = Some(at);
                    }
                }
                _ => chosen.push(r),
            }
        }
        requeued += app
            .db
            .requeue_failed(&campaign, &chosen)
            .await
            .map_err(app.store_err(&format!("could not put the failed recipients back ({requeued} were)")))?;
        match page.next {
            None => break true,
            Some(_) if Instant::now() >= deadline => break false,
            Some(next) => start = Start::At(next),
        }
    };
    let campaign = if requeued > 0 { send_again(app, &campaign).await? } else { campaign };
    Ok(Retried { requeued, waiting, next_retry_at, complete, campaign })
}

/// Sends the recipients put back: a completed campaign (or one resumed meanwhile) starts a
/// new dispatch run, which reads every pending recipient; a paused one sends them on resume.
async fn send_again(app: &App, read: &Campaign) -> AppResult<Campaign> {
    match change_status(app, read, Action::Retry, None).await {
        Ok(sending) => dispatch(app, sending).await,
        Err(StoreError::ConditionFailed) => load(app, &read.id).await,
        Err(e) => Err(app.store_err("the recipients were put back, but the campaign could not be restarted")(e)),
    }
}
