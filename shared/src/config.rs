//! Every setting comes from the environment, read here and nowhere else.

use std::env;

use crate::domain::secret::Secret;

#[derive(Debug, Clone)]
pub struct Config {
    /// The single DynamoDB table.
    pub table_name: String,
    /// ISO 3166 region used to read national phone numbers (e.g. `0151 2345678` with `DE`).
    pub default_region: String,
    /// The queue the dispatcher reads.
    pub dispatch_queue_url: Option<String>,
    /// The queue the senders read.
    pub send_queue_url: Option<String>,
    /// The queue the webhook puts delivery statuses on, and the status applier reads.
    pub status_queue_url: Option<String>,
    /// The queue of deleted campaigns whose items the background-jobs function removes.
    pub job_queue_url: Option<String>,
    /// The first wait (seconds) before statuses of a message not known are tried again; it
    /// doubles each time, up to 15 minutes, for a day.
    pub unknown_status_retry_seconds: u64,
    /// The queue the import worker reads: the bucket's notices of uploaded files, and an
    /// import's next step when an invocation stops before the end of its file.
    pub import_queue_url: Option<String>,
    /// The bucket recipient files are uploaded to.
    pub upload_bucket: Option<String>,
    /// How much CSV an export gathers before it uploads it as one part (S3 takes parts of at
    /// least 5 MiB, but for the last).
    pub export_part_bytes: usize,
    /// Rows an import reads, checks and writes at a time (and checkpoints after). At most
    /// 10,000: an upload saves its chunk's numbers on its item before writing them, and an
    /// item holds 400 KB.
    pub import_chunk_rows: usize,
    /// How long a request-body import may write (seconds) before it stops and answers with
    /// what it wrote: below API Gateway's 30-second limit.
    pub import_request_seconds: u64,
    /// Where messages go: Meta's Graph API, or any server that speaks the Cloud API.
    pub whatsapp_api_url: String,
    pub whatsapp_api_version: String,
    /// The longest a request to WhatsApp may take (seconds), connection included.
    pub whatsapp_timeout_seconds: u64,
    /// A claim older than this (seconds) belongs to a sender that is gone: its outcome is
    /// unknown. Read through [`Config::stale_claim_seconds`], which keeps it longer than any
    /// claim is held.
    pub stale_claim_seconds: i64,
    /// A sending campaign whose counters have not moved for this long (seconds) is checked by
    /// the reconciler for recipients no job holds.
    pub stall_seconds: i64,
    /// The webhook's shared secrets, in AWS: a Secrets Manager secret holding
    /// `{"app_secret": …, "verify_token": …}`. When set it wins over the two variables below.
    pub webhook_secret_arn: Option<String>,
    /// Meta app secret that signs webhooks (`X-Hub-Signature-256`); locally from the environment.
    pub whatsapp_app_secret: Option<Secret>,
    /// The token Meta's webhook verification must present; locally from the environment.
    pub whatsapp_verify_token: Option<Secret>,
    /// Each account's access token is the Secrets Manager secret `<prefix><account id>`.
    pub account_secret_prefix: String,
    /// The EventBridge bus campaign events are published to.
    pub event_bus_name: String,
    /// The EventBridge Scheduler group that holds the campaigns' one-time schedules.
    pub schedule_group: String,
    /// What a campaign's schedule invokes: the scheduled-start function.
    pub scheduled_start_function_arn: Option<String>,
    /// The role EventBridge Scheduler assumes to invoke it.
    pub scheduler_role_arn: Option<String>,
    /// Where EventBridge Scheduler puts a start it could not deliver.
    pub schedule_dead_letter_queue_arn: Option<String>,
    /// Whether the sending side prints CloudWatch metrics (EMF lines): `METRICS=emf` turns
    /// them on, `METRICS=off` off; unset, they are on in Lambda only.
    pub metrics: bool,
    /// The CloudWatch namespace of those metrics.
    pub metrics_namespace: String,
}

impl Config {
    pub fn from_env() -> Self {
        let var = |k: &str| env::var(k).ok().filter(|v| !v.trim().is_empty());
        fn number<T: std::str::FromStr>(value: Option<String>, default: T) -> T {
            value.and_then(|v| v.parse().ok()).unwrap_or(default)
        }
        Config {
            table_name: var("TABLE_NAME").unwrap_or_else(|| "whatsapp-campaigns".into()),
            default_region: var("DEFAULT_REGION").unwrap_or_else(|| "US".into()).to_uppercase(),
            dispatch_queue_url: var("DISPATCH_QUEUE_URL"),
            send_queue_url: var("SEND_QUEUE_URL"),
            status_queue_url: var("STATUS_QUEUE_URL"),
            job_queue_url: var("JOB_QUEUE_URL"),
            unknown_status_retry_seconds: number(var("UNKNOWN_STATUS_RETRY_SECONDS"), 60),
            import_queue_url: var("IMPORT_QUEUE_URL"),
            upload_bucket: var("UPLOAD_BUCKET"),
            export_part_bytes: number::<usize>(var("EXPORT_PART_BYTES"), 8 * 1024 * 1024).max(1),
            import_chunk_rows: number::<usize>(var("IMPORT_CHUNK_ROWS"), 4000).clamp(1, 10_000),
            import_request_seconds: number(var("IMPORT_REQUEST_SECONDS"), 20),
            whatsapp_api_url: var("WHATSAPP_API_URL").unwrap_or_else(|| "https://graph.facebook.com".into()),
            whatsapp_api_version: var("WHATSAPP_API_VERSION").unwrap_or_else(|| "v21.0".into()),
            whatsapp_timeout_seconds: number(var("WHATSAPP_TIMEOUT_SECONDS"), 10),
            stale_claim_seconds: number(var("STALE_CLAIM_SECONDS"), 90),
            stall_seconds: number(var("STALL_SECONDS"), 120),
            webhook_secret_arn: var("WEBHOOK_SECRET_ARN"),
            whatsapp_app_secret: var("WHATSAPP_APP_SECRET").map(Secret::from),
            whatsapp_verify_token: var("WHATSAPP_VERIFY_TOKEN").map(Secret::from),
            account_secret_prefix: var("ACCOUNT_SECRET_PREFIX")
                .unwrap_or_else(|| "whatsapp-campaigns/accounts/".into()),
            event_bus_name: var("EVENT_BUS_NAME").unwrap_or_else(|| "whatsapp-campaigns".into()),
            schedule_group: var("SCHEDULE_GROUP").unwrap_or_else(|| "default".into()),
            scheduled_start_function_arn: var("SCHEDULED_START_FUNCTION_ARN"),
            scheduler_role_arn: var("SCHEDULER_ROLE_ARN"),
            schedule_dead_letter_queue_arn: var("SCHEDULE_DEAD_LETTER_QUEUE_ARN"),
            metrics: match var("METRICS").map(|v| v.to_lowercase()).as_deref() {
                Some("emf") => true,
                Some(_) => false,
                None => in_lambda(),
            },
            metrics_namespace: var("METRICS_NAMESPACE").unwrap_or_else(|| "WhatsAppCampaigns".into()),
        }
    }
}

impl Config {
    /// When a claim counts as stale: the configured time, but never less than a sender holds a
    /// claim (slots up to a second and a half ahead, the request's timeout, the write) plus a
    /// margin, so that a slow answer is never taken for a dead sender.
    pub fn stale_claim_seconds(&self) -> i64 {
        self.stale_claim_seconds.max(self.whatsapp_timeout_seconds as i64 + 5)
    }
}

/// Whether this process is a Lambda function (the runtime names it in the environment).
fn in_lambda() -> bool {
    env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok()
}

/// Structured logs: JSON in Lambda (CloudWatch), readable text locally; `LOG_FORMAT=json` or
/// `text` chooses. `RUST_LOG` filters.
pub fn init_tracing() {
    let json = match env::var("LOG_FORMAT").map(|v| v.to_lowercase()).as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => in_lambda(),
    };
    let result = if json {
        tracing::subscriber::set_global_default(json_logs(std::io::stdout)).map_err(|e| e.to_string())
    } else {
        tracing_subscriber::fmt().with_env_filter(log_filter()).with_target(false).try_init().map_err(|e| e.to_string())
    };
    // A second initialisation (tests) is harmless.
    let _ = result;
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// JSON logs, one object a line: the event's fields under `fields`, and under `span` those of
/// the span it happened in — a send job's or a dispatch step's `campaign` and `account` — so
/// that every line of a job can be found by either (CloudWatch Logs Insights:
/// `filter span.campaign = "…"`).
fn json_logs<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_target(false)
        .with_writer(writer)
        .json()
        .without_time()
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_webhook_secrets() {
        let config = Config {
            whatsapp_app_secret: Some("app-secret-value".into()),
            whatsapp_verify_token: Some("verify-token-value".into()),
            ..Config::from_env()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("app-secret-value") && !shown.contains("verify-token-value"), "{shown}");
    }

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_json_line_of_a_job_carries_its_campaign_and_account() {
        use tracing::Instrument;
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = json_logs(move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            // As the sender does: the account is known once the campaign is read.
            let span = tracing::info_span!("send_job", campaign = "c-1", account = tracing::field::Empty);
            let job = async {
                tracing::Span::current().record("account", "a-1");
                tracing::info!(count = 3, "claimed");
                tracing::warn!("pausing the campaign");
            };
            futures_util::FutureExt::now_or_never(job.instrument(span));
            tracing::info!("outside any job");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(logged.len(), 3, "{text}");
        for line in &logged[..2] {
            assert_eq!(line["span"]["campaign"], "c-1", "{line}");
            assert_eq!(line["span"]["account"], "a-1", "{line}");
            assert_eq!(line["span"]["name"], "send_job", "{line}");
        }
        assert_eq!(
            (logged[0]["fields"]["message"].as_str(), logged[0]["fields"]["count"].as_i64()),
            (Some("claimed"), Some(3))
        );
        assert_eq!(logged[1]["level"], "WARN");
        assert!(logged[2].get("span").is_none(), "{}", logged[2]);
    }
}
