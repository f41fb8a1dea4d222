//! The application every function runs on: the adapters and the configuration, built once per
//! process ([`App::new`], or [`App::from_env`] in a Lambda binary).

use std::sync::Arc;

use crate::adapters::events::EventBus;
use crate::adapters::metrics::Metrics;
use crate::adapters::objects::Objects;
use crate::adapters::queue::Queue;
use crate::adapters::scheduler::Scheduler;
use crate::adapters::secrets::{AccountTokens, WebhookSecrets};
use crate::adapters::store::Db;
use crate::adapters::whatsapp::WhatsAppClient;
use crate::config::Config;
use crate::domain::phone::PhoneParser;
use crate::error::{AppError, AppResult};

/// What every use case gets: the store, the accounts' tokens, the queues, the scheduler, the
/// WhatsApp client, the upload bucket, the metrics and the configuration, built once per process.
pub struct App {
    pub db: Db,
    pub tokens: AccountTokens,
    pub queue: Queue,
    pub scheduler: Scheduler,
    pub whatsapp: WhatsAppClient,
    pub config: Config,
    pub phones: PhoneParser,
    pub events: EventBus,
    pub objects: Objects,
    /// CloudWatch metrics of the sending side, emitted once per queue batch.
    pub metrics: Metrics,
    sdk: crate::adapters::aws::SdkConfig,
    webhook_secrets: tokio::sync::OnceCell<WebhookSecrets>,
}

impl App {
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, config: Config) -> Arc<Self> {
        let db = Db::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name.clone());
        let tokens = AccountTokens::new(sdk, config.account_secret_prefix.clone());
        let queue = Queue::new(aws_sdk_sqs::Client::new(sdk), &config);
        let scheduler = Scheduler::new(sdk, &config);
        let timeout = std::time::Duration::from_secs(config.whatsapp_timeout_seconds);
        let whatsapp = WhatsAppClient::new(&config.whatsapp_api_url, &config.whatsapp_api_version, timeout);
        let phones = PhoneParser::new(&config.default_region);
        let events = EventBus::new(aws_sdk_eventbridge::Client::new(sdk), config.event_bus_name.clone());
        let objects = Objects::new(sdk, config.upload_bucket.clone());
        let metrics = Metrics::new(&config.metrics_namespace, config.metrics);
        let (sdk, webhook_secrets) = (sdk.clone(), Default::default());
        Arc::new(App {
            db,
            tokens,
            queue,
            scheduler,
            whatsapp,
            config,
            phones,
            events,
            objects,
            metrics,
            sdk,
            webhook_secrets,
        })
    }

    /// The webhook's secrets, read once (a failed read is tried again on the next request).
    pub async fn webhook_secrets(&self) -> AppResult<&WebhookSecrets> {
        self.webhook_secrets
            .get_or_try_init(|| crate::adapters::secrets::load(&self.sdk, &self.config))
            .await
            .map_err(|e| AppError::unavailable("the webhook is not configured", e))
    }

    /// The store, with store failures turned into a 503 for the caller.
    pub(crate) fn store_err(&self, context: &str) -> impl Fn(crate::adapters::store::StoreError) -> AppError + '_ {
        let context = context.to_string();
        move |e| match e {
            crate::adapters::store::StoreError::BadCursor => {
                AppError::bad_request("cursor is not one this API answered as next_cursor for this listing")
            }
            e => AppError::unavailable(&context, e),
        }
    }
}

impl App {
    /// Builds the application from the environment (the Lambda binaries and the local stack).
    pub async fn from_env() -> Arc<App> {
        App::new(&crate::adapters::aws::sdk_config(), Config::from_env())
    }
}
