//! The queue consumers of the local stack: they poll the emulator's SQS queues the way
//! Lambda's event source mapping does and call the same handlers the Lambda functions run; and
//! the reconciler, run on a timer as the EventBridge schedule runs it in AWS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use shared::api::App;
use shared::sending::{self, Consumer, Incoming};

/// How the local consumers behave.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Concurrent sender workers (Lambda's concurrency for the sender).
    pub senders: usize,
    /// The time an invocation gets, as the function's timeout in `template.yaml`.
    pub sender_timeout: Duration,
    /// How often the reconciler runs (every minute in AWS); `None`: never.
    pub reconcile_every: Option<Duration>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers { senders: 4, sender_timeout: Duration::from_secs(60), reconcile_every: Some(Duration::from_secs(60)) }
    }
}

impl Workers {
    /// Starts one dispatcher and `senders` sender workers; they run until the process ends.
    pub fn spawn(&self, app: Arc<App>, sqs: aws_sdk_sqs::Client) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut start = |consumer: Consumer, url: Option<String>, timeout: Duration| {
            if let Some(url) = url {
                let poller = Poller { app: app.clone(), sqs: sqs.clone(), url, consumer, timeout };
                handles.push(tokio::spawn(poller.run()));
            }
        };
        start(Consumer::Dispatcher, app.config.dispatch_queue_url.clone(), Duration::from_secs(120));
        for _ in 0..self.senders {
            start(Consumer::Sender, app.config.send_queue_url.clone(), self.sender_timeout);
        }
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
        if let Err(e) = sending::reconcile(&app).await {
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

    /// Receives up to 10 messages (a Lambda batch), handles them, deletes the ones handled and
    /// lets the failed ones come back. Returns whether there was anything to do.
    async fn poll_once(&self) -> Result<bool, String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        let messages: Vec<Message> = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(false);
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
            })
            .collect();
        let failed = sending::consume(&self.app, self.consumer, incoming, Instant::now() + self.timeout).await;
        let mut done = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let id = m.message_id.clone().unwrap_or_default();
            let handle = m.receipt_handle.clone().unwrap_or_default();
            // Failed ones come back after the back-off `consume` set.
            if !failed.contains(&id) {
                let entry = DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(handle).build();
                done.push(entry.map_err(|e| e.to_string())?);
            }
        }
        if !done.is_empty() {
            let req = self.sqs.delete_message_batch().queue_url(&self.url).set_entries(Some(done));
            req.send().await.map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        }
        Ok(true)
    }
}
