//! The local stack (never deployed): the emulator's table and queues built from `template.yaml`,
//! and every route of the API on one port through the handlers the Lambda binaries run.

pub mod fake_whatsapp;
pub mod infra;
pub mod server;
pub mod workers;

use std::sync::Arc;

use shared::api::App;
use shared::config::Config;

pub use infra::BoxError;

/// Everything the local processes share, built against the emulator.
pub struct Stack {
    pub app: Arc<App>,
    pub sqs: aws_sdk_sqs::Client,
    pub queues: std::collections::HashMap<String, String>,
    /// The queue that receives a copy of every campaign event (see [`infra::ensure_event_tap`]).
    pub event_tap_url: String,
}

impl Stack {
    /// Creates (or finds) the table and queues named after `config.table_name` and builds the
    /// application on them.
    pub async fn start(config: Config) -> Result<Stack, BoxError> {
        Self::start_with(&shared::config::aws_config().await, config).await
    }

    /// The same with an SDK configuration of the caller's (the benchmark counts requests).
    pub async fn start_with(sdk: &aws_config::SdkConfig, mut config: Config) -> Result<Stack, BoxError> {
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
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let buses = infra::ensure_event_buses(&events, &config.table_name, &template).await?;
        config.event_bus_name = buses.get("EventBus").cloned().ok_or("template.yaml has no EventBus")?;
        let event_tap_url = infra::ensure_event_tap(&events, &sqs, &config.event_bus_name).await?;
        Ok(Stack { app: App::new(&sdk, config), sqs, queues, event_tap_url })
    }
}
