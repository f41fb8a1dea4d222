//! The SQS adapter: dispatch steps and send jobs.

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;

use crate::domain::sending::{DispatchJob, SendJob};

#[derive(Debug, thiserror::Error)]
#[error("SQS: {0}")]
pub struct QueueError(String);

#[derive(Clone, Debug)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    dispatch_url: Option<String>,
    send_url: Option<String>,
}

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
    pub fn new(client: aws_sdk_sqs::Client, dispatch_url: Option<String>, send_url: Option<String>) -> Self {
        Queue { client, dispatch_url, send_url }
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
    pub async fn retry_later(&self, queue_url: &str, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        let req = self.client.change_message_visibility().queue_url(queue_url).receipt_handle(receipt_handle);
        req.visibility_timeout(after.as_secs().min(43_200) as i32).send().await.map_err(sqs_error)?;
        Ok(())
    }
}
