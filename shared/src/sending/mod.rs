//! The sending side: the dispatcher turns a started campaign's pending recipients into send
//! jobs; senders claim, pace, send and record each recipient. Both are SQS-triggered and run
//! the same code in Lambda and in the local stack.

mod dispatcher;
mod sender;

pub use dispatcher::dispatch;
pub use sender::send_batch;

use crate::api::App;
use crate::domain::campaign::{Action, CampaignStatus};
use crate::store::StoreError;

/// The two queue consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Dispatcher,
    Sender,
}

/// Handles a batch of queue messages; returns the ids of those to deliver again.
pub async fn consume(
    app: &App,
    consumer: Consumer,
    messages: Vec<Incoming>,
    deadline: std::time::Instant,
) -> Vec<String> {
    match consumer {
        Consumer::Sender => send_batch(app, messages, deadline).await,
        Consumer::Dispatcher => {
            let mut failed = Vec::new();
            for m in messages {
                let result = match serde_json::from_str(&m.body) {
                    Ok(job) => dispatch(app, job).await,
                    Err(e) => Err(SendError::Malformed(e.to_string())),
                };
                if let Err(e) = result {
                    tracing::warn!(message = %m.id, error = %e, "dispatch job will be delivered again");
                    failed.push(m.id);
                }
            }
            failed
        }
    }
}

/// One queue message, whatever delivered it (Lambda's event or the local poller).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("the message is not a job: {0}")]
    Malformed(String),
    #[error("recipients are held by another sender; retry later")]
    Busy,
}

/// Marks the campaign completed once every recipient has an outcome. The conditional write
/// (from `sending` only; `completed` is final) makes this happen exactly once, whoever calls it.
pub async fn complete_if_done(app: &App, campaign_id: &str) -> Result<(), SendError> {
    // The campaign item is also written by counting transactions, which can make a plain
    // write fail with a transaction conflict: try a few times before leaving it to the next
    // batch.
    let mut result = Ok(());
    for attempt in 0..4 {
        result = try_complete(app, campaign_id).await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(crate::domain::sending::backoff(attempt, 0.5)).await;
    }
    result
}

async fn try_complete(app: &App, campaign_id: &str) -> Result<(), SendError> {
    let Some(c) = app.db.get_campaign(campaign_id).await? else { return Ok(()) };
    if c.status != CampaignStatus::Sending || !c.all_processed() {
        return Ok(());
    }
    match app.change_status(&c, Action::Complete, None).await {
        Ok(done) => {
            tracing::info!(campaign = %done.id, sent = done.sent_count, failed = done.failed_count, "campaign completed");
            Ok(())
        }
        Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
