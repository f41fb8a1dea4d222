//! The queue consumers of the local stack: they poll the emulator's SQS queues the way
//! Lambda's event source mapping does and call the same handlers the Lambda functions run; and
//! the reconciler, run on a timer as the EventBridge schedule runs it in AWS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use shared::app::App;
use shared::usecases::send::{self, Consumer, Incoming};

/// How the local consumers behave.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Concurrent sender workers (Lambda's concurrency for the sender).
    pub senders: usize,
    /// The time an invocation gets, as the function's timeout in `template.yaml`.
    pub sender_timeout: Duration,
    /// How often the reconciler runs (every minute in AWS); `None`: never.
    pub reconcile_every: Option<Duration>,
    /// Concurrent status appliers.
    pub status_appliers: usize,
    /// The time an import worker's invocation gets (its timeout in `template.yaml`).
    pub import_timeout: Duration,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            senders: 4,
            sender_timeout: Duration::from_secs(60),
            reconcile_every: Some(Duration::from_secs(60)),
            status_appliers: 2,
            import_timeout: Duration::from_secs(900),
        }
    }
}

/// How many messages an invocation takes at most, and how long it waits to gather them
/// (Lambda's BatchSize and MaximumBatchingWindowInSeconds).
#[derive(Debug, Clone, Copy)]
struct Batch {
    size: usize,
    window: Duration,
}

impl Workers {
    /// Starts one dispatcher and `senders` sender workers; they run until the process ends.
    pub fn spawn(&self, app: Arc<App>, sqs: aws_sdk_sqs::Client) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut start = |consumer: Consumer, url: Option<String>, timeout: Duration, batch: Batch| {
            if let Some(url) = url {
                let poller = Poller { app: app.clone(), sqs: sqs.clone(), url, consumer, timeout, batch };
                handles.push(tokio::spawn(poller.run()));
            }
        };
        let ten = Batch { size: 10, window: Duration::ZERO };
        start(Consumer::Dispatcher, app.config.dispatch_queue_url.clone(), Duration::from_secs(120), ten);
        for _ in 0..self.senders {
            start(Consumer::Sender, app.config.send_queue_url.clone(), self.sender_timeout, ten);
        }
        // As the status applier's event source in template.yaml: 100 messages, or what a
        // second gathers.
        let statuses = Batch { size: 100, window: Duration::from_secs(1) };
        for _ in 0..self.status_appliers {
            start(Consumer::Statuses, app.config.status_queue_url.clone(), Duration::from_secs(30), statuses);
        }
        start(Consumer::Jobs, app.config.job_queue_url.clone(), Duration::from_secs(120), Batch { size: 1, ..ten });
        // As the import worker's event source: one message per invocation, each with the
        // function's timeout (an import that needs longer continues in the next invocation).
        let one = Batch { size: 1, window: Duration::ZERO };
        start(Consumer::Imports, app.config.import_queue_url.clone(), self.import_timeout, one);
        if let Some(every) = self.reconcile_every {
            handles.push(tokio::spawn(reconcile_every(app, every)));
        }
        handles
    }
}

/// Runs the reconciler every `every`, as the schedule does in AWS.
async fn reconcile_every(app: Arc<App>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = send::reconcile(&app).await {
            tracing::warn!(error = %e, "reconciling failed; the next pass repeats it");
        }
    }
}

struct Poller {
    app: Arc<App>,
    sqs: aws_sdk_sqs::Client,
    url: String,
    consumer: Consumer,
    timeout: Duration,
    batch: Batch,
}

impl Poller {
    async fn run(self) {
        loop {
            match self.poll_once().await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::warn!(queue = %self.url, error = %e, "polling failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Receives a batch of messages as Lambda's event source mapping would (up to the batch
    /// size, gathered for up to its window), handles them, deletes the ones handled and lets
    /// the failed ones come back. Returns whether there was anything to do.
    async fn poll_once(&self) -> Result<bool, String> {
        let mut messages = self.receive(10.min(self.batch.size), 1).await?;
        if messages.is_empty() {
            return Ok(false);
        }
        let gathering = Instant::now();
        while messages.len() < self.batch.size && gathering.elapsed() < self.batch.window {
            let more = self.receive(10.min(self.batch.size - messages.len()), 0).await?;
            if more.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            messages.extend(more);
        }
        let incoming = messages
            .iter()
            .map(|m| Incoming {
                id: m.message_id.clone().unwrap_or_default(),
                body: m.body.clone().unwrap_or_default(),
                receipt_handle: m.receipt_handle.clone().unwrap_or_default(),
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                sent_at_ms: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|t| t.parse().ok()),
            })
            .collect();
        let failed = send::consume(&self.app, self.consumer, incoming, Instant::now() + self.timeout).await;
        // Failed ones come back after the back-off `consume` set.
        let mut done = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if !failed.contains(&m.message_id.clone().unwrap_or_default()) {
                let handle = m.receipt_handle.clone().unwrap_or_default();
                let entry = DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(handle).build();
                done.push(entry.map_err(|e| e.to_string())?);
            }
        }
        for chunk in done.chunks(10) {
            let req = self.sqs.delete_message_batch().queue_url(&self.url).set_entries(Some(chunk.to_vec()));
            req.send().await.map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        }
        Ok(true)
    }

    async fn receive(&self, max: usize, wait_seconds: i32) -> Result<Vec<Message>, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(out.messages.unwrap_or_default())
    }
}
