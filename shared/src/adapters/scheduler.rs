//! The EventBridge Scheduler adapter: each scheduled campaign has one one-time schedule
//! (`campaign-<id>` in the project's group) that invokes the scheduled-start function with
//! the campaign id and the time it was scheduled for.

use std::time::Duration;

use aws_sdk_scheduler::config::timeout::TimeoutConfig;
use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    Target,
};

use crate::config::Config;
use crate::domain::schedule::{
    MAX_EVENT_AGE_SECONDS, MAX_RETRY_ATTEMPTS, ScheduledStart, at_expression, schedule_name,
};

#[derive(Debug, thiserror::Error)]
#[error("EventBridge Scheduler: {0}")]
pub struct SchedulerError(String);

fn sdk_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_scheduler::error::SdkError<E, R>,
) -> SchedulerError {
    SchedulerError(DisplayErrorContext(e).to_string())
}

#[derive(Clone, Debug)]
pub struct Scheduler {
    client: aws_sdk_scheduler::Client,
    group: String,
    function_arn: Option<String>,
    role_arn: Option<String>,
    dead_letter_arn: Option<String>,
}

impl Scheduler {
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, config: &Config) -> Self {
        // Every call answers well within the API's 29 s, retries included.
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(15))
            .build();
        let client = aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(sdk).timeout_config(timeouts).build(),
        );
        Scheduler {
            client,
            group: config.schedule_group.clone(),
            function_arn: config.scheduled_start_function_arn.clone(),
            role_arn: config.scheduler_role_arn.clone(),
            dead_letter_arn: config.schedule_dead_letter_queue_arn.clone(),
        }
    }

    pub fn client(&self) -> &aws_sdk_scheduler::Client {
        &self.client
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The scheduled-start function the schedules invoke.
    pub fn function_arn(&self) -> Option<&str> {
        self.function_arn.as_deref()
    }

    fn target(&self, start: &ScheduledStart) -> Result<Target, SchedulerError> {
        let missing = |var: &str| SchedulerError(format!("{var} is not configured"));
        let input = serde_json::to_string(start).map_err(|e| SchedulerError(e.to_string()))?;
        let retry = RetryPolicy::builder()
            .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
            .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
            .build();
        Target::builder()
            .arn(self.function_arn.clone().ok_or_else(|| missing("SCHEDULED_START_FUNCTION_ARN"))?)
            .role_arn(self.role_arn.clone().ok_or_else(|| missing("SCHEDULER_ROLE_ARN"))?)
            .input(input)
            .retry_policy(retry)
            .set_dead_letter_config(self.dead_letter_arn.as_ref().map(|a| DeadLetterConfig::builder().arn(a).build()))
            .build()
            .map_err(|e| SchedulerError(e.to_string()))
    }

    /// Gives the campaign a schedule for `start`: a one-time `at()` in UTC, no flexible window,
    /// deleted by the scheduler once it has fired. A campaign that has one already (moved, or
    /// left over from an earlier attempt) gets it replaced.
    pub async fn put_start(&self, start: &ScheduledStart) -> Result<(), SchedulerError> {
        let name = schedule_name(&start.campaign_id);
        let expression = at_expression(&start.scheduled_at)
            .ok_or_else(|| SchedulerError(format!("{} is not an RFC 3339 time", start.scheduled_at)))?;
        let target = self.target(start)?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| SchedulerError(e.to_string()))?;
        let description = format!("Starts campaign {} at {}", start.campaign_id, start.scheduled_at);
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.group)
            .description(&description)
            .schedule_expression(&expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window.clone())
            .target(target.clone())
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => {
                // An update replaces every setting of the schedule, so all of them are sent again.
                self.client
                    .update_schedule()
                    .name(&name)
                    .group_name(&self.group)
                    .description(description)
                    .schedule_expression(expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window)
                    .target(target)
                    .action_after_completion(ActionAfterCompletion::Delete)
                    .state(ScheduleState::Enabled)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                Ok(())
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// Deletes the campaign's schedule. Returns whether it had one (one already gone is fine).
    pub async fn delete_start(&self, campaign_id: &str) -> Result<bool, SchedulerError> {
        let deleted =
            self.client.delete_schedule().name(schedule_name(campaign_id)).group_name(&self.group).send().await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(false),
            Err(e) => Err(sdk_err(e)),
        }
    }
}
