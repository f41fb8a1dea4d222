//! The table's stream, read in the local stack as Lambda's event source reads it in AWS: the
//! records go, in order, to the same handler the `tally` function runs
//! ([`shared::usecases::tally`]), and are read again when it fails (it adds each change once
//! however often it sees it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::adapters::aws::SdkConfig;
use shared::adapters::sigv4::{self, Call, Service, Signer};
use shared::app::App;
use shared::usecases::tally::{self, StreamRecord};
use tokio::sync::{Notify, watch};

/// How often an idle reader looks for new records (Lambda polls a shard about four times a
/// second).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Records a read takes at most (the event source's batch size in template.yaml).
const BATCH: usize = 1000;

/// A running reader of the stack's table stream.
#[derive(Clone)]
pub struct Tally {
    /// How many reads found nothing new, each after counting everything before it.
    idle_reads: watch::Receiver<u64>,
    wake: Arc<Notify>,
    /// How long records are gathered before they are counted (milliseconds).
    window_ms: Arc<AtomicU64>,
}

impl Tally {
    /// Starts reading the stream of `app`'s table from its oldest record, on a thread and
    /// clients of its own (in AWS the function has its own machine: here its reading and
    /// parsing never delays a sender's wake-up for its slot). It stops once the `Tally` and its
    /// clones are gone.
    pub fn spawn(app: &App, sdk: &SdkConfig, window: Duration) -> Tally {
        let (tx, rx) = watch::channel(0);
        let wake = Arc::new(Notify::new());
        let window_ms = Arc::new(AtomicU64::new(window.as_millis() as u64));
        let (sdk, config, woken, window) = (sdk.clone(), app.config.clone(), wake.clone(), window_ms.clone());
        let started = std::thread::Builder::new().name("tally".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(runtime) = runtime.inspect_err(|e| tracing::error!(error = %e, "no runtime for the stream")) else {
                return;
            };
            runtime.block_on(async move {
                let reader = Reader {
                    signer: Signer::new(&sdk),
                    url: shared::adapters::aws::endpoint(&sdk, "DynamoDB").unwrap_or_default(),
                    app: App::new(&sdk, config),
                    window_ms: window,
                };
                reader.run(tx, woken).await
            })
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "the table's stream is not read: no thread for it");
        }
        Tally { idle_reads: rx, wake, window_ms }
    }

    /// Counts records as soon as they are read, without a batching window (the tests: an
    /// answer reflects what was written before it without waiting a second).
    pub fn without_window(&self) {
        self.window_ms.store(0, Ordering::Relaxed);
    }

    /// Waits until every change written before the call is counted.
    pub async fn settled(&self) {
        let mut rx = self.idle_reads.clone();
        let start = *rx.borrow_and_update();
        // A read that found nothing and started after the call: the second from now.
        while *rx.borrow_and_update() < start + 2 {
            self.wake.notify_one();
            if tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.is_ok_and(|r| r.is_err()) {
                return; // the reader is gone (its runtime ends)
            }
        }
    }
}

/// A `GetRecords` answer.
#[derive(serde::Deserialize)]
struct Records {
    #[serde(rename = "Records", default)]
    records: Vec<StreamRecord>,
    #[serde(rename = "NextShardIterator")]
    next: Option<String>,
}

struct Reader {
    signer: Signer,
    url: String,
    app: Arc<App>,
    window_ms: Arc<AtomicU64>,
}

impl Reader {
    /// Calls `action`; answers the body of a successful answer.
    async fn call(&self, action: &'static str, input: Value) -> Result<String, String> {
        let target = format!("DynamoDBStreams_20120810.{action}");
        let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target.as_str())];
        let call = Call {
            operation: action,
            method: http::Method::POST,
            url: &self.url,
            headers: &headers,
            body: input.to_string().into(),
        };
        let answer = self.signer.send(Service::Other("dynamodb"), &call).await?;
        let status = answer.status();
        let text = sigv4::text(answer).await?;
        if !status.is_success() {
            return Err(format!("{action}: HTTP {status}: {text}"));
        }
        Ok(text)
    }

    async fn call_json(&self, action: &'static str, input: Value) -> Result<Value, String> {
        let text = self.call(action, input).await?;
        serde_json::from_str(&text).map_err(|e| format!("{action}: {e}"))
    }

    /// An iterator of the table's (one) stream shard: from its oldest record, or after `after`.
    async fn iterator(&self, after: Option<&str>) -> Result<String, String> {
        let table = self.app.db.table();
        let described = self.app.db.client().describe_table().table_name(table).send().await;
        let arn = described
            .map_err(|e| format!("DescribeTable: {e}"))?
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| format!("the table {table} has no stream"))?;
        let stream = self.call_json("DescribeStream", json!({"StreamArn": arn})).await?;
        let shard = stream["StreamDescription"]["Shards"][0]["ShardId"].as_str().ok_or("the stream has no shard")?;
        let mut input = json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"});
        if let Some(seq) = after {
            input["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
            input["SequenceNumber"] = json!(seq);
        }
        let it = self.call_json("GetShardIterator", input).await?;
        it["ShardIterator"].as_str().map(str::to_string).ok_or_else(|| "no shard iterator".into())
    }

    async fn run(self, idle_reads: watch::Sender<u64>, wake: Arc<Notify>) {
        let mut last: Option<String> = None;
        let mut iterator: Option<String> = None;
        let mut gathered: Vec<StreamRecord> = Vec::new();
        let mut first_at: Option<Instant> = None;
        while !idle_reads.is_closed() {
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator(last.as_deref()).await {
                    Ok(it) => it,
                    Err(e) => {
                        tracing::warn!(error = %e, "the table's stream cannot be read; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let read = self.call("GetRecords", json!({"ShardIterator": it, "Limit": BATCH})).await;
            let read: Records = match read.and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string())) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the table's stream failed; reading again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // A new iterator after the last record counted: what was gathered since
                    // comes again.
                    (gathered, first_at) = (Vec::new(), None);
                    continue;
                }
            };
            iterator = read.next;
            if read.records.is_empty() && gathered.is_empty() {
                idle_reads.send_modify(|n| *n += 1);
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            // As the event source: records gathered for the batching window (or until a batch
            // is full), then the same records until the handler takes them.
            let since = *first_at.get_or_insert_with(Instant::now);
            gathered.extend(read.records);
            let window = Duration::from_millis(self.window_ms.load(Ordering::Relaxed));
            if gathered.len() < BATCH && since.elapsed() < window {
                tokio::time::sleep(IDLE_POLL.min(window - since.elapsed())).await;
                continue;
            }
            while let Err(e) = tally::count(&self.app, &gathered).await
                && !idle_reads.is_closed()
            {
                tracing::warn!(error = %e, "counting the stream's changes failed; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            last = gathered.last().map(|r| r.dynamodb.sequence_number.clone());
            gathered.clear();
            first_at = None;
        }
    }
}
