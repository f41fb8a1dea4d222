//! The SQS adapter: dispatch steps, send jobs and delivery statuses.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::domain::delivery::Notification;
use crate::domain::job::Job;
use crate::domain::sending::{DispatchJob, SendJob};

#[derive(Debug, thiserror::Error)]
#[error("SQS: {0}")]
pub struct QueueError(String);

#[derive(Clone, Debug)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    dispatch_url: Option<String>,
    send_url: Option<String>,
    status_url: Option<String>,
    delete_url: Option<String>,
    /// Statuses the webhook queues, gathered into batch requests (see [`Queue::put_statuses`]).
    statuses: Arc<tokio::sync::OnceCell<mpsc::Sender<Pending>>>,
}

/// A status message waiting to be sent, and who waits for it.
type Pending = (String, Duration, oneshot::Sender<Result<(), QueueError>>);

/// At most this many bytes in one batch request (SQS takes 256 KiB).
const BATCH_BYTES: usize = 200 * 1024;

fn url(u: &Option<String>, name: &str) -> Result<String, QueueError> {
    u.clone().ok_or_else(|| QueueError(format!("{name} is not configured")))
}

fn body<T: Serialize>(v: &T) -> Result<String, QueueError> {
    serde_json::to_string(v).map_err(|e| QueueError(e.to_string()))
}

fn sqs_error<E: std::error::Error + 'static, R: std::fmt::Debug>(e: aws_sdk_sqs::error::SdkError<E, R>) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// SQS delays whole seconds, up to 15 minutes.
fn delay_seconds(delay: Duration) -> i32 {
    delay.as_secs_f64().ceil().min(900.0) as i32
}

impl Queue {
    /// The queues at the URLs `config` has.
    pub fn new(client: aws_sdk_sqs::Client, config: &crate::config::Config) -> Self {
        Queue {
            client,
            dispatch_url: config.dispatch_queue_url.clone(),
            send_url: config.send_queue_url.clone(),
            status_url: config.status_queue_url.clone(),
            delete_url: config.job_queue_url.clone(),
            statuses: Default::default(),
        }
    }

    /// Queues a background job, `delay` later.
    pub async fn job_later(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let url = url(&self.delete_url, "JOB_QUEUE_URL")?;
        let req = self.client.send_message().queue_url(url).message_body(body(job)?);
        req.delay_seconds(delay_seconds(delay)).send().await.map_err(sqs_error)?;
        Ok(())
    }

    /// Puts notifications on the status queue, `delay` later, and returns once SQS has them.
    /// Messages put at the same moment (concurrent webhook requests in one process) share
    /// batch requests: one per ten messages, not one per message.
    pub async fn put_statuses(&self, notes: &[Notification], delay: Duration) -> Result<(), QueueError> {
        let url = url(&self.status_url, "STATUS_QUEUE_URL")?;
        let sender = self
            .statuses
            .get_or_init(|| async {
                let (tx, rx) = mpsc::channel::<Pending>(1024);
                tokio::spawn(gather_statuses(self.client.clone(), url, rx));
                tx
            })
            .await;
        let mut answers = Vec::with_capacity(notes.len());
        for n in notes {
            let (tx, rx) = oneshot::channel();
            sender.send((body(n)?, delay, tx)).await.map_err(|_| QueueError("the status sender stopped".into()))?;
            answers.push(rx);
        }
        for answer in answers {
            answer.await.map_err(|_| QueueError("the status sender stopped".into()))??;
        }
        Ok(())
    }

    /// Queues a dispatch step, `delay` later (rounded up to whole seconds).
    pub async fn dispatch(&self, job: &DispatchJob, delay: Duration) -> Result<(), QueueError> {
        let url = url(&self.dispatch_url, "DISPATCH_QUEUE_URL")?;
        let req = self.client.send_message().queue_url(url).message_body(body(job)?);
        req.delay_seconds(delay_seconds(delay)).send().await.map_err(sqs_error)?;
        Ok(())
    }

    /// Puts send jobs on the send queue, `delay` later (rounded up to whole seconds).
    pub async fn send_jobs(&self, jobs: &[SendJob], delay: Duration) -> Result<(), QueueError> {
        let timed: Vec<(&SendJob, Duration)> = jobs.iter().map(|j| (j, delay)).collect();
        self.send_jobs_at(&timed).await
    }

    /// Puts send jobs on the send queue, each its delay later (rounded up to whole seconds),
    /// 10 per request (SQS's batch limit).
    pub async fn send_jobs_at(&self, jobs: &[(&SendJob, Duration)]) -> Result<(), QueueError> {
        let url = url(&self.send_url, "SEND_QUEUE_URL")?;
        for chunk in jobs.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (job, delay)) in chunk.iter().enumerate() {
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body(job)?)
                        .delay_seconds(delay_seconds(*delay))
                        .build()
                        .map_err(|e| QueueError(e.to_string()))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error)?;
            if !out.failed.is_empty() {
                return Err(QueueError(format!("{} send jobs were refused by SQS", out.failed.len())));
            }
        }
        Ok(())
    }

    /// Makes a message that failed visible again `after` from now, instead of at the end of
    /// the queue's visibility timeout.
    /// Puts a message on the queue at `queue_url` (an import's next step on the import queue).
    pub async fn put<T: Serialize>(&self, queue_url: &str, message: &T) -> Result<(), QueueError> {
        let req = self.client.send_message().queue_url(queue_url).message_body(body(message)?);
        req.send().await.map_err(sqs_error)?;
        Ok(())
    }

    pub async fn retry_later(&self, queue_url: &str, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        let req = self.client.change_message_visibility().queue_url(queue_url).receipt_handle(receipt_handle);
        req.visibility_timeout(after.as_secs().min(43_200) as i32).send().await.map_err(sqs_error)?;
        Ok(())
    }
}

/// How long a batch of statuses waits for more before its request starts: a few
/// milliseconds of an answer to Meta buy requests of several messages instead of one each.
const STATUS_LINGER: Duration = Duration::from_millis(4);

/// Batch requests of statuses in flight at once from one process.
const STATUS_BATCHES_IN_FLIGHT: usize = 4;

/// Sends the status messages handed over, each batch request with what has gathered meanwhile
/// (up to ten messages, [`BATCH_BYTES`]), a few requests at a time, and tells each sender how
/// it went. A batch is formed once a request may start, so that messages arriving meanwhile
/// join it.
async fn gather_statuses(client: aws_sdk_sqs::Client, url: String, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(STATUS_BATCHES_IN_FLIGHT));
    let launch = |batch: Vec<Pending>, permit: tokio::sync::OwnedSemaphorePermit| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            send_statuses(&client, &url, batch).await;
            drop(permit);
        });
    };
    while let Some(first) = rx.recv().await {
        let Ok(mut permit) = slots.clone().acquire_owned().await else { return };
        let mut bytes = first.0.len();
        let mut batch = vec![first];
        let linger = tokio::time::Instant::now() + STATUS_LINGER;
        while batch.len() < 10 {
            let next = match rx.try_recv() {
                Ok(next) => Ok(next),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(linger, rx.recv()).await.map_err(|_| ()).and_then(|n| n.ok_or(()))
                }
                Err(_) => Err(()),
            };
            match next {
                Ok(next) if bytes + next.0.len() <= BATCH_BYTES => {
                    bytes += next.0.len();
                    batch.push(next);
                }
                Ok(next) => {
                    launch(std::mem::take(&mut batch), permit);
                    let Ok(another) = slots.clone().acquire_owned().await else { return };
                    permit = another;
                    bytes = next.0.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        launch(batch, permit);
    }
}

async fn send_statuses(client: &aws_sdk_sqs::Client, url: &str, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let mut entries = Vec::with_capacity(batch.len());
    for (i, (body, delay, _)) in batch.iter().enumerate() {
        let entry = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(body)
            .delay_seconds(delay_seconds(*delay))
            .build()
            .map_err(|e| QueueError(e.to_string()));
        match entry {
            Ok(e) => entries.push(e),
            Err(e) => {
                for (_, _, tx) in batch {
                    let _ = tx.send(Err(QueueError(e.0.clone())));
                }
                return;
            }
        }
    }
    let result = client.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await.map_err(sqs_error);
    let refused: Vec<String> = match &result {
        Ok(out) => out.failed.iter().map(|f| f.id.clone()).collect(),
        Err(_) => Vec::new(),
    };
    for (i, (_, _, tx)) in batch.into_iter().enumerate() {
        let answer = match &result {
            Err(e) => Err(QueueError(e.0.clone())),
            Ok(_) if refused.contains(&i.to_string()) => Err(QueueError("SQS refused a status message".into())),
            Ok(_) => Ok(()),
        };
        let _ = tx.send(answer);
    }
}
