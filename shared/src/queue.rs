//! The SQS adapter: dispatch jobs and send jobs.

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

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, dispatch_url: Option<String>, send_url: Option<String>) -> Self {
        Queue { client, dispatch_url, send_url }
    }

    pub async fn dispatch(&self, job: &DispatchJob) -> Result<(), QueueError> {
        let url = url(&self.dispatch_url, "DISPATCH_QUEUE_URL")?;
        let req = self.client.send_message().queue_url(url).message_body(body(job)?);
        req.send().await.map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    /// Puts send jobs on the send queue, 10 per request (SQS's batch limit), optionally delayed.
    pub async fn send_jobs(&self, jobs: &[SendJob], delay: Duration) -> Result<(), QueueError> {
        let url = url(&self.send_url, "SEND_QUEUE_URL")?;
        for chunk in jobs.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, job) in chunk.iter().enumerate() {
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body(job)?)
                        .delay_seconds(delay.as_secs().min(900) as i32)
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
                .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
            if !out.failed.is_empty() {
                return Err(QueueError(format!("{} send jobs were refused by SQS", out.failed.len())));
            }
        }
        Ok(())
    }
}
