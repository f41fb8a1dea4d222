//! The local stack's EventBridge Scheduler. The emulator stores schedules but never fires
//! them, so this task does what the service would: every second it lists the schedules of the
//! stack's group that target the scheduled-start function, and when one's `at()` time has come
//! it invokes the handler the Lambda function runs with the schedule's input, then applies the
//! schedule's `ActionAfterCompletion` (`DELETE`: the schedule is deleted). A failed invocation
//! is retried as Lambda retries an asynchronous one, then put on the dead-letter queue.
//! Locally a schedule fires within about a second of its time; in AWS, within its minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::primitives::DateTime as SdkTime;
use aws_sdk_scheduler::types::{ActionAfterCompletion, ScheduleState};
use chrono::Utc;
use serde_json::{Value, json};
use shared::app::App;
use shared::domain::schedule::parse_at_expression;
use shared::usecases::schedule::scheduled_start;

/// How the local scheduler behaves.
#[derive(Debug, Clone)]
pub struct Firing {
    /// How often the schedules are looked at.
    pub every: Duration,
    /// When a failed start is tried again (Lambda: about 1 and 2 minutes for an asynchronous
    /// invocation); after the last, it goes to the dead-letter queue.
    pub retry_after: Vec<Duration>,
}

impl Default for Firing {
    fn default() -> Self {
        Firing { every: Duration::from_secs(1), retry_after: vec![Duration::from_secs(60), Duration::from_secs(120)] }
    }
}

impl Firing {
    /// Starts the task; it runs until the process (or the test's runtime) ends. Starts that
    /// fail for good go to `dead_letter_url` when there is one.
    pub fn spawn(
        &self,
        app: Arc<App>,
        sqs: aws_sdk_sqs::Client,
        dead_letter_url: Option<String>,
    ) -> tokio::task::JoinHandle<()> {
        let mut scheduler = LocalScheduler {
            app,
            sqs,
            dead_letter_url,
            retry_after: self.retry_after.clone(),
            known: HashMap::new(),
            retries: Vec::new(),
        };
        let every = self.every;
        tokio::spawn(async move {
            loop {
                if let Err(e) = scheduler.tick().await {
                    tracing::warn!(error = %e, "could not read the schedules; trying again");
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

/// What a schedule says, read once per version of it.
#[derive(Debug, Clone)]
struct Details {
    modified: Option<SdkTime>,
    /// When it fires (`None`: not a one-time schedule in UTC, which this stack does not fire).
    at: Option<chrono::DateTime<Utc>>,
    input: Value,
    delete_after: bool,
    /// A completed schedule that is kept (`ActionAfterCompletion: NONE`) never fires again.
    done: bool,
}

struct Retry {
    input: Value,
    attempt: usize,
    due: Instant,
}

struct LocalScheduler {
    app: Arc<App>,
    sqs: aws_sdk_sqs::Client,
    dead_letter_url: Option<String>,
    retry_after: Vec<Duration>,
    known: HashMap<String, Details>,
    retries: Vec<Retry>,
}

impl LocalScheduler {
    async fn tick(&mut self) -> Result<(), String> {
        let client = self.app.scheduler.client().clone();
        let group = self.app.scheduler.group().to_string();
        let target = self.app.scheduler.function_arn().unwrap_or_default().to_string();
        let mut pages = client.list_schedules().group_name(&group).into_paginator().send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DisplayErrorContext(e).to_string())?;
            for s in page.schedules() {
                let ours = s.target().is_some_and(|t| t.arn() == target);
                if ours && s.state() == Some(&ScheduleState::Enabled) {
                    names.push((s.name().unwrap_or_default().to_string(), s.last_modification_date().cloned()));
                }
            }
        }
        self.known.retain(|name, _| names.iter().any(|(n, _)| n == name));
        let now = Utc::now();
        for (name, modified) in names {
            let details = match self.known.get(&name) {
                Some(d) if d.modified == modified => d.clone(),
                _ => match self.read(&group, &name, modified).await {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(schedule = %name, error = %e, "could not read a schedule");
                        continue;
                    }
                },
            };
            let due = details.at.is_some_and(|at| at <= now) && !details.done;
            self.known.insert(name.clone(), Details { done: details.done || due, ..details.clone() });
            if !due {
                continue;
            }
            tracing::info!(schedule = %name, input = %details.input, "schedule due; invoking the scheduled start");
            self.invoke(details.input.clone(), 0).await;
            if details.delete_after {
                let deleted = client.delete_schedule().group_name(&group).name(&name).send().await;
                if let Err(e) = deleted
                    && !e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception())
                {
                    tracing::warn!(schedule = %name, error = %DisplayErrorContext(e), "could not delete a completed schedule");
                }
            }
        }
        let (due, waiting): (Vec<Retry>, Vec<Retry>) =
            std::mem::take(&mut self.retries).into_iter().partition(|r| r.due <= Instant::now());
        self.retries = waiting;
        for r in due {
            self.invoke(r.input, r.attempt).await;
        }
        Ok(())
    }

    /// Reads a schedule's time, input and action after completion.
    async fn read(&self, group: &str, name: &str, modified: Option<SdkTime>) -> Result<Option<Details>, String> {
        let client = self.app.scheduler.client();
        let out = match client.get_schedule().group_name(group).name(name).send().await {
            Ok(out) => out,
            // Deleted since the listing.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return Ok(None),
            Err(e) => return Err(DisplayErrorContext(e).to_string()),
        };
        let utc = out.schedule_expression_timezone().is_none_or(|tz| tz == "UTC");
        let at = out.schedule_expression().and_then(parse_at_expression).filter(|_| utc);
        if at.is_none() {
            tracing::warn!(
                schedule = %name,
                expression = out.schedule_expression().unwrap_or_default(),
                timezone = out.schedule_expression_timezone().unwrap_or_default(),
                "only one-time at() schedules in UTC are fired locally; this one is left alone"
            );
        }
        let raw = out.target().and_then(|t| t.input()).unwrap_or("{}");
        let input = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        let delete_after = out.action_after_completion() == Some(&ActionAfterCompletion::Delete);
        Ok(Some(Details { modified, at, input, delete_after, done: false }))
    }

    /// Runs the scheduled start as the Lambda function would; a failure is retried later, and
    /// after the last retry the event goes to the dead-letter queue as Lambda's on-failure
    /// destination would put it.
    async fn invoke(&mut self, input: Value, attempt: usize) {
        match scheduled_start(&self.app, input.clone()).await {
            Ok(fired) => tracing::info!(?fired, "scheduled start done"),
            Err(e) => match self.retry_after.get(attempt) {
                Some(wait) => {
                    tracing::warn!(error = %e, ?wait, "scheduled start failed; it will be retried");
                    self.retries.push(Retry { input, attempt: attempt + 1, due: Instant::now() + *wait });
                }
                None => {
                    tracing::error!(error = %e, %input, "scheduled start failed for good; to the dead-letter queue");
                    let Some(url) = &self.dead_letter_url else { return };
                    let record = json!({
                        "requestContext": { "condition": "RetriesExhausted", "approximateInvokeCount": attempt + 1 },
                        "requestPayload": input,
                        "responsePayload": { "errorMessage": e.to_string() },
                    });
                    if let Err(e) = self.sqs.send_message().queue_url(url).message_body(record.to_string()).send().await
                    {
                        tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not reach the dead-letter queue");
                    }
                }
            },
        }
    }
}
