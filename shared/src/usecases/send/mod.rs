//! The sending side: the dispatcher releases a started campaign's pending recipients into
//! send jobs a window at a time; senders claim, pace, send and record each recipient; the
//! reconciler repairs what a lost job or a dead sender leaves behind. The two consumers are
//! SQS-triggered and the reconciler runs every minute; all run the same code in Lambda and in
//! the local stack.

mod dispatcher;
mod reconciler;
mod sender;

use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing::field::Empty;

pub use dispatcher::dispatch;
pub use reconciler::{Reconciled, reconcile, recounted};
pub use sender::send_batch;

use crate::adapters::store::StoreError;
use crate::app::App;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::domain::delivery::Notification;
use crate::domain::job::Job;
use crate::domain::sending::{DispatchJob, SendJob};
use crate::usecases::lifecycle::change_status;

/// The queue consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Dispatcher,
    Sender,
    /// The status applier (delivery statuses the webhook queued).
    Statuses,
    /// The background jobs (a deleted campaign's removal, exports).
    Jobs,
    /// The import worker (uploaded recipient files; [`crate::usecases::upload`]).
    Imports,
}

impl Consumer {
    /// Its name in logs and metrics (the dimension `Queue` of `QueueAgeMs`).
    pub fn name(self) -> &'static str {
        match self {
            Consumer::Dispatcher => "dispatch",
            Consumer::Sender => "send",
            Consumer::Statuses => "status",
            Consumer::Jobs => "job",
            Consumer::Imports => "import",
        }
    }
}

/// One queue message, whatever delivered it (Lambda's event or the local poller).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub id: String,
    pub body: String,
    /// What deletes it or makes it visible again (empty when it came from elsewhere).
    pub receipt_handle: String,
    /// How many times SQS has delivered it, this time included.
    pub receive_count: u32,
    /// When SQS took it (unix milliseconds, its `SentTimestamp`), when known.
    pub sent_at_ms: Option<i64>,
}

/// Handles a batch of queue messages; returns the ids of those to deliver again. Each of
/// those is made visible again after a back-off that grows with its deliveries (2, 4, 8… up
/// to 60 s; at once for a message that is not a job at all), rather than after the queue's
/// visibility timeout; after the queue's `maxReceiveCount` deliveries it goes to the
/// dead-letter queue.
pub async fn consume(app: &App, consumer: Consumer, messages: Vec<Incoming>, deadline: Instant) -> Vec<String> {
    let handles: Vec<(String, String, Duration)> = messages
        .iter()
        .map(|m| {
            let readable = match consumer {
                Consumer::Dispatcher => serde_json::from_str::<DispatchJob>(&m.body).is_ok(),
                Consumer::Sender => serde_json::from_str::<SendJob>(&m.body).is_ok(),
                Consumer::Statuses => serde_json::from_str::<Notification>(&m.body).is_ok(),
                Consumer::Jobs => serde_json::from_str::<Job>(&m.body).is_ok(),
                Consumer::Imports => crate::usecases::upload::steps(&m.body).is_ok(),
            };
            let after =
                if readable { Duration::from_secs((1u64 << m.receive_count.min(6)).min(60)) } else { Duration::ZERO };
            (m.id.clone(), m.receipt_handle.clone(), after)
        })
        .collect();
    app.metrics.queue_age(consumer.name(), messages.iter().filter_map(|m| m.sent_at_ms));
    let failed = match consumer {
        Consumer::Sender => send_batch(app, messages, deadline).await,
        Consumer::Statuses => {
            let (applied, failed) = crate::usecases::statuses::apply_batch(app, messages).await;
            let matched = applied.statuses.saturating_sub(applied.waiting + applied.unknown);
            app.metrics.statuses(matched, applied.waiting, applied.unknown);
            failed
        }
        Consumer::Imports => crate::usecases::upload::consume(app, messages, deadline).await,
        Consumer::Dispatcher => {
            let step = |job: DispatchJob| {
                let span = tracing::info_span!("dispatch_step", campaign = %job.campaign_id, account = Empty);
                dispatch(app, job).instrument(span)
            };
            each_job(messages, "dispatch step", step).await
        }
        Consumer::Jobs => each_job(messages, "job", |job| crate::usecases::jobs::run(app, job, deadline)).await,
    };
    let url = match consumer {
        Consumer::Dispatcher => app.config.dispatch_queue_url.as_deref(),
        Consumer::Sender => app.config.send_queue_url.as_deref(),
        Consumer::Statuses => app.config.status_queue_url.as_deref(),
        Consumer::Jobs => app.config.job_queue_url.as_deref(),
        Consumer::Imports => app.config.import_queue_url.as_deref(),
    };
    // One set of metric lines per batch, whatever became of it.
    app.metrics.flush();
    let Some(url) = url else { return failed };
    for (id, handle, after) in handles.iter().filter(|(id, h, _)| failed.contains(id) && !h.is_empty()) {
        if let Err(e) = app.queue.retry_later(url, handle, *after).await {
            tracing::warn!(message = %id, error = %e, "could not shorten the retry; the visibility timeout applies");
        }
    }
    failed
}

/// Handles each message as a job of type `J`, one after another; returns the ids of those that
/// failed (`what` names them in the log).
async fn each_job<J, F, Fut>(messages: Vec<Incoming>, what: &str, handle: F) -> Vec<String>
where
    J: serde::de::DeserializeOwned,
    F: Fn(J) -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let mut failed = Vec::new();
    for m in messages {
        let result = match serde_json::from_str(&m.body) {
            Ok(job) => handle(job).await,
            Err(e) => Err(SendError::Malformed(e.to_string())),
        };
        if let Err(e) = result {
            tracing::warn!(message = %m.id, error = %e, "{what} will be delivered again");
            failed.push(m.id);
        }
    }
    failed
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] crate::adapters::queue::QueueError),
    #[error("{0}")]
    Secrets(#[from] crate::adapters::secrets::SecretsError),
    #[error("the message is not a job: {0}")]
    Malformed(String),
    #[error("{0}")]
    Export(#[from] crate::usecases::export::ExportError),
}

/// Marks the campaign completed once every recipient has an outcome. The conditional write
/// (from `sending` only; `completed` is final) makes this happen exactly once, whoever calls it.
pub async fn complete_if_done(app: &App, campaign_id: &str) -> Result<bool, SendError> {
    let Some(c) = app.db.get_campaign(campaign_id).await? else { return Ok(false) };
    if c.status != CampaignStatus::Sending || !c.all_processed() {
        return Ok(false);
    }
    match change_status(app, &c, Action::Complete, None).await {
        Ok(done) => {
            tracing::info!(campaign = %done.id, sent = done.sent_count, failed = done.failed_count, "campaign completed");
            Ok(true)
        }
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
