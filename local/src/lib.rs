//! The local stack (never deployed): the emulator's table, queues and schedule group built from
//! `template.yaml`, every route of the API on one port through the handlers the Lambda binaries
//! run, the queue consumers, and the firing of due schedules.

pub mod bench;
pub mod dead_letters;
pub mod fake_whatsapp;
pub mod infra;
pub mod runtime_api;
pub mod schedules;
pub mod server;
pub mod stream;
pub mod workers;

use std::sync::Arc;

use shared::app::App;
use shared::config::Config;

pub use infra::BoxError;

/// The verify token of the local stack's webhook when `WHATSAPP_VERIFY_TOKEN` is not set.
pub const DEV_VERIFY_TOKEN: &str = "local-verify-token";

/// Everything the local processes share, built against the emulator.
pub struct Stack {
    pub app: Arc<App>,
    pub sqs: aws_sdk_sqs::Client,
    pub queues: std::collections::HashMap<String, String>,
    /// The queue that receives a copy of every campaign event (see [`infra::ensure_event_tap`]).
    pub event_tap_url: String,
    /// The reader of the table's stream, which counts sends' outcomes and statuses.
    pub tally: stream::Tally,
}

/// The account id the emulator uses; the ARNs of resources it does not run (the scheduled-start
/// function, the scheduler's role) are made up in it, well-formed as EventBridge Scheduler
/// requires.
pub const LOCAL_ACCOUNT: &str = "123456789012";

impl Stack {
    /// Creates (or finds) the table, queues and schedule group named after `config.table_name`
    /// and builds the application on them.
    pub async fn start(config: Config) -> Result<Stack, BoxError> {
        Self::start_with(&shared::adapters::aws::sdk_config(), config).await
    }

    /// The same with an SDK configuration of the caller's (the benchmark counts requests).
    pub async fn start_with(sdk: &shared::adapters::aws::SdkConfig, mut config: Config) -> Result<Stack, BoxError> {
        let sdk = sdk.clone();
        if sdk.endpoint_url().is_none() {
            return Err("AWS_ENDPOINT_URL is not set: the local stack only runs against the emulator".into());
        }
        let template = infra::Template::load(&infra::Template::default_path())?;
        infra::ensure_table(&aws_sdk_dynamodb::Client::new(&sdk), &config.table_name, &template).await?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queues = infra::ensure_queues(&sqs, &config.table_name, &template).await?;
        config.dispatch_queue_url = queues.get("DispatchQueue").cloned();
        config.send_queue_url = queues.get("SendQueue").cloned();
        config.status_queue_url = queues.get("StatusQueue").cloned();
        config.job_queue_url = queues.get("JobQueue").cloned();
        config.import_queue_url = queues.get("ImportQueue").cloned();
        // The upload bucket, named after the stack (bucket names are lowercase), notifying
        // the import queue of uploaded files.
        let bucket = format!("{}-uploads", config.table_name).to_ascii_lowercase();
        let import_queue = queues.get("ImportQueue").ok_or("template.yaml has no ImportQueue")?;
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(import_queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .ok_or("the import queue has no ARN")?;
        // Path-style addresses: the emulator has no per-bucket host names.
        let s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build();
        infra::ensure_upload_bucket(&aws_sdk_s3::Client::from_conf(s3), &bucket, &queue_arn, &template).await?;
        config.upload_bucket = Some(bucket);
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let buses = infra::ensure_event_buses(&events, &config.table_name, &template).await?;
        config.event_bus_name = buses.get("EventBus").cloned().ok_or("template.yaml has no EventBus")?;
        // As the template names them after the stack: the accounts' token secrets.
        config.account_secret_prefix = format!("{}/accounts/", config.table_name);
        let event_tap_url = infra::ensure_event_tap(&events, &sqs, &config.event_bus_name).await?;
        let groups =
            infra::ensure_schedule_groups(&aws_sdk_scheduler::Client::new(&sdk), &config.table_name, &template).await?;
        config.schedule_group = groups.get("ScheduleGroup").cloned().ok_or("template.yaml has no ScheduleGroup")?;
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        let prefix = &config.table_name;
        config.scheduled_start_function_arn =
            Some(format!("arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{prefix}-ScheduledStartFunction"));
        config.scheduler_role_arn = Some(format!("arn:aws:iam::{LOCAL_ACCOUNT}:role/{prefix}-SchedulerRole"));
        if let Some(url) = queues.get("ScheduleDeadLetterQueue") {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await?;
            config.schedule_dead_letter_queue_arn =
                attrs.attributes.and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn));
        }
        let app = App::new(&sdk, config);
        // As the tally function's event source: its batching window.
        let window = template.batching_window("TallyFunction").unwrap_or_default();
        let tally = stream::Tally::spawn(&app, &sdk, window);
        Ok(Stack { app, sqs, queues, event_tap_url, tally })
    }

    /// Fires the stack's due schedules from now on (see [`schedules`]).
    pub fn fire_schedules(&self, firing: &schedules::Firing) -> tokio::task::JoinHandle<()> {
        firing.spawn(self.app.clone(), self.sqs.clone(), self.queues.get("ScheduleDeadLetterQueue").cloned())
    }
}
