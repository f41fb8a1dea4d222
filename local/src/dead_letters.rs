//! The dead-letter queues of the local stack: what landed there, and moving it back to the
//! queue it came from. (In AWS: the SQS console's "Start DLQ redrive", or
//! `aws sqs start-message-move-task`, which the emulator does not have.)

use std::collections::HashMap;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry};

use crate::BoxError;
use crate::infra::Template;

/// One dead-letter queue: its logical id, the queue that feeds it (none for the scheduler's),
/// how many messages it holds, and the bodies of up to 10 of them.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub queue: String,
    pub source: Option<String>,
    pub count: usize,
    pub sample: Vec<String>,
}

fn sqs_err<E: std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> BoxError {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string().into()
}

/// Every dead-letter queue of `template.yaml` (logical id ending in `DeadLetterQueue`), given
/// the stack's queue URLs by logical id.
pub async fn list(sqs: &aws_sdk_sqs::Client, queues: &HashMap<String, String>) -> Result<Vec<DeadLetters>, BoxError> {
    let sources = Template::load(&Template::default_path())?.dead_letter_sources();
    let mut ids: Vec<&String> = queues.keys().filter(|id| id.ends_with("DeadLetterQueue")).collect();
    ids.sort();
    let mut all = Vec::new();
    for id in ids {
        let url = &queues[id];
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(sqs_err)?;
        let count = attrs
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // A look without taking: the messages are visible again at once.
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(sqs_err)?;
        let sample = out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
        all.push(DeadLetters { queue: id.clone(), source: sources.get(id).cloned(), count, sample });
    }
    Ok(all)
}

/// Moves every message of the dead-letter queue `dead_letter_queue` (a logical id) back to
/// the queue that feeds it; returns how many were moved.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    queues: &HashMap<String, String>,
    dead_letter_queue: &str,
) -> Result<usize, BoxError> {
    let sources = Template::load(&Template::default_path())?.dead_letter_sources();
    let source = sources
        .get(dead_letter_queue)
        .ok_or_else(|| format!("{dead_letter_queue} is not a dead-letter queue of a queue"))?;
    let (from, to) = match (queues.get(dead_letter_queue), queues.get(source)) {
        (Some(f), Some(t)) => (f, t),
        _ => return Err(format!("the stack has no queue {dead_letter_queue} or {source}").into()),
    };
    let mut moved = 0;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(sqs_err)?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        let mut sends = Vec::new();
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let body = m.body.clone().unwrap_or_default();
            sends.push(SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build()?);
            let handle = m.receipt_handle.clone().unwrap_or_default();
            deletes.push(DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(handle).build()?);
        }
        sqs.send_message_batch().queue_url(to).set_entries(Some(sends)).send().await.map_err(sqs_err)?;
        sqs.delete_message_batch().queue_url(from).set_entries(Some(deletes)).send().await.map_err(sqs_err)?;
        moved += messages.len();
    }
}
