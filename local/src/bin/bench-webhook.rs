//! `bench-webhook`: what Meta's delivery statuses cost now that the webhook only checks the
//! signature and queues, and the status applier applies them in batches. A campaign of N
//! recipients (argument 1, default 2,000) is marked sent as the sender records it; then every
//! recipient gets `delivered` and, in a second pass, `read`, each in a signed POST to
//! `/webhooks/whatsapp` over HTTP (at 240 POSTs a second, then as fast as 32 at once go), while two status appliers poll the status
//! queue as Lambda's event source does. A second campaign gets the same in POSTs of 1,000
//! statuses (4 in flight), as Meta sends them at volume. Prints, per round: the webhook's
//! answer latency seen by the client, the answers other than 200, the time until the
//! campaign's counters show every status, DynamoDB and SQS requests and estimated write units
//! per status (the applier's work included), and whether the counters equal a recount; notes
//! the breakdown by operation where a target is missed, and messages left on the status queue
//! or moved to its dead-letter queue.
//!
//! Run with `scripts/bench.sh webhook [RECIPIENTS]` (it starts the emulators: one for
//! DynamoDB, one for the rest). Not a test: it prints figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use futures_util::{StreamExt, TryStreamExt, stream};
use http::Method;
use local::bench::{Upstreams, call, counting_proxy, per, write_units_per};
use serde_json::{Value, json};
use shared::app::App;
use shared::config::Config;
use shared::domain::id::Id;
use shared::domain::phone::Phone;
use shared::domain::recipient::{RECIPIENT_SHARDS, RecipientKey, shard_of};

const SECRET: &str = "bench-app-secret";
/// Targets: the webhook answers well within Meta's patience, and at one status per POST the
/// store sees batches, not one request per status.
const P99_TARGET_MS: f64 = 50.0;
const DDB_PER_STATUS_TARGET: f64 = 0.3;
/// How long a round may take to be applied before it is reported as not applied.
const APPLY_TIMEOUT: Duration = Duration::from_secs(300);

type BenchResult<T> = Result<T, local::BoxError>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// An account and an approved template to make campaigns with. Returns their ids.
async fn account_and_template(app: &Arc<App>) -> (Value, Value) {
    let post = |path: &'static str, body: Value| call(app, Method::POST, path, "application/json", body.to_string());
    let account = post(
        "/api/accounts",
        json!({"name": "bench", "phone_number_id": "900001", "business_account_id": "1",
               "access_token": "bench-token", "messaging_limit_tier": "TIER_UNLIMITED"}),
    )
    .await;
    let template = post(
        "/api/templates",
        json!({"account_id": account["id"], "name": "bench", "language": "en_US", "category": "MARKETING",
               "status": "APPROVED", "components": [{"type": "BODY", "text": "Hi {{1}}"}]}),
    )
    .await;
    (account["id"].clone(), template["id"].clone())
}

/// A campaign of `n` recipients, each recorded as sent with its own wamid, the way the
/// sender records an accepted message. Returns (campaign id, [(phone, wamid)]).
async fn sent_campaign(
    app: &Arc<App>,
    (account, template): &(Value, Value),
    n: usize,
) -> BenchResult<(String, Vec<(String, String)>)> {
    let campaign = call(
        app,
        Method::POST,
        "/api/campaigns",
        "application/json",
        json!({"name": "bench", "account_id": account, "template_id": template, "variable_mapping": {"1": "name"}})
            .to_string(),
    )
    .await;
    let id = campaign["id"].as_str().ok_or("the campaign has no id")?.to_string();
    let phones: Vec<String> = (0..n).map(|i| format!("+1415{:03}{:04}", 200 + i / 10_000, i % 10_000)).collect();
    let csv: String = std::iter::once("phone_number,name\n".to_string())
        .chain(phones.iter().map(|p| format!("{p},Customer\n")))
        .collect();
    call(app, Method::POST, &format!("/api/campaigns/{id}/recipients/import"), "text/csv", csv).await;
    let sent: Vec<(String, String)> =
        phones.into_iter().map(|p| (p, format!("wamid.{}", uuid::Uuid::new_v4().simple()))).collect();
    let db = &app.db;
    stream::iter(&sent)
        .map(Ok::<_, local::BoxError>)
        .try_for_each_concurrent(16, |(phone, wamid)| {
            let id = &id;
            async move {
                db.client()
                    .update_item()
                    .table_name(db.table())
                    .key("PK", s(shared::adapters::store::keys::recipient_pk(id, shard_of(RECIPIENT_SHARDS, phone))))
                    .key("SK", s(format!("R#{phone}")))
                    .update_expression(
                        "SET #s = :s, wamid = :w, sent_at = :t, GSI3PK = :g3, GSI3SK = :r REMOVE GSI2PK, GSI2SK",
                    )
                    .condition_expression("attribute_exists(PK)")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(":s", s("sent"))
                    .expression_attribute_values(":w", s(wamid))
                    .expression_attribute_values(":t", s(shared::domain::now()))
                    .expression_attribute_values(":g3", s(format!("WAMID#{wamid}")))
                    .expression_attribute_values(":r", s("R"))
                    .send()
                    .await
                    .map_err(|e| {
                        format!("marking {phone} sent: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e))
                    })?;
                Ok(())
            }
        })
        .await?;
    Ok((id, sent))
}

/// The key the sender puts in `biz_opaque_callback_data` for a recipient of a campaign created
/// now.
fn callback(campaign: &str, phone: &str) -> String {
    let (campaign, phone) = (Id::stored(campaign.to_string()), Phone::stored(phone.to_string()));
    RecipientKey::new(&campaign, RECIPIENT_SHARDS, &phone).callback()
}

/// The POST bodies of one pass: `status` for every recipient, `per_post` to a POST, each with
/// the sender's callback key as Meta echoes it.
fn pass(campaign: &str, sent: &[(String, String)], status: &str, at: i64, per_post: usize) -> Vec<String> {
    sent.chunks(per_post)
        .map(|chunk| {
            let statuses: Vec<Value> = chunk
                .iter()
                .map(|(phone, wamid)| {
                    json!({"id": wamid, "status": status, "timestamp": at.to_string(),
                           "recipient_id": phone.trim_start_matches('+'),
                           "biz_opaque_callback_data": callback(campaign, phone)})
                })
                .collect();
            json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
                   "value": {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550000000", "phone_number_id": "900001"},
                             "statuses": statuses}}]}]})
            .to_string()
        })
        .collect()
}

/// What the client saw of a pass's POSTs.
#[derive(Default)]
struct Answers {
    latencies: Vec<Duration>,
    refused: usize,
    /// The first answer other than 200, to show why.
    first_refusal: Option<String>,
}

/// Posts the bodies, signed, `in_flight` at a time — with a `rate`, each at its time (`rate`
/// a second, as a sender like Meta posts whatever the answers), otherwise each as soon as one
/// is answered — timing each from its send to the end of its answer.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    bodies: Vec<String>,
    in_flight: usize,
    rate: Option<f64>,
) -> Answers {
    let begun = tokio::time::Instant::now();
    let results: Vec<(Duration, Result<(), String>)> = stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| async move {
            if let Some(rate) = rate {
                tokio::time::sleep_until(begun + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            let signature = shared::adapters::signature::sign(SECRET.as_bytes(), body.as_bytes());
            let started = Instant::now();
            let res = http
                .post(url)
                .header("content-type", "application/json")
                .header(shared::adapters::signature::HEADER, signature)
                .body(body)
                .send()
                .await;
            let outcome = match res {
                Ok(r) => {
                    let status = r.status();
                    match r.text().await {
                        Ok(_) if status == reqwest::StatusCode::OK => Ok(()),
                        Ok(text) => Err(format!("{status}: {}", text.chars().take(300).collect::<String>())),
                        Err(e) => Err(format!("{status}, answer not read: {e}")),
                    }
                }
                Err(e) => Err(format!("no answer: {e}")),
            };
            (started.elapsed(), outcome)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let mut answers = Answers::default();
    for (latency, outcome) in results {
        answers.latencies.push(latency);
        if let Err(e) = outcome {
            answers.refused += 1;
            answers.first_refusal.get_or_insert(e);
        }
    }
    answers
}

/// The `q` quantile of sorted latencies, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN)
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Polls the campaign until its counters show `n` delivered and `n` read; returns the time
/// since `started`, or `None` after [`APPLY_TIMEOUT`].
async fn applied_after(reads: &Arc<App>, campaign: &str, n: u64, started: Instant) -> Option<Duration> {
    let path = format!("/api/campaigns/{campaign}");
    loop {
        let c = call(reads, Method::GET, &path, "application/json", "").await;
        if count(&c["delivered_count"]) >= n && count(&c["read_count"]) >= n {
            return Some(started.elapsed());
        }
        if started.elapsed() > APPLY_TIMEOUT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Messages on a queue: visible, in flight and delayed.
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> BenchResult<u64> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| format!("reading the depth of {url}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    Ok(attrs.attributes.unwrap_or_default().values().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// Waits until the status queue holds nothing, for at most `within`; returns what is left.
/// Polled twice a second: the emulator counts a queue by walking all its messages.
async fn queue_drained(sqs: &aws_sdk_sqs::Client, url: &str, within: Duration) -> BenchResult<u64> {
    let deadline = Instant::now() + within;
    loop {
        let left = depth(sqs, url).await?;
        if left == 0 || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the counters equal a recount of the recipients' items, and how many of `n` are
/// read when not all are.
async fn recount(reads: &Arc<App>, campaign: &str, n: u64) -> String {
    let c = call(reads, Method::GET, &format!("/api/campaigns/{campaign}"), "application/json", "").await;
    match local::bench::recount(&reads.db, campaign).await {
        Err(e) => format!("not recounted: {e}"),
        Ok(r) => {
            // The benchmark marks recipients sent without counting them: only the statuses' counts.
            let equal = match (count(&c["delivered_count"]), count(&c["read_count"])) {
                (d, rd) if d == r.delivered && rd == r.read => "yes".to_string(),
                (d, rd) => format!("NO: delivered {d}, recounted {}; read {rd}, recounted {}", r.delivered, r.read),
            };
            if r.read == n { equal } else { format!("{equal} ({} of {n} read)", r.read) }
        }
    }
}

struct Round {
    name: &'static str,
    per_post: usize,
    in_flight: usize,
    /// POSTs a second, sent on time whatever the answers; `None`: the next as soon as one is
    /// answered.
    rate: Option<f64>,
}

/// The POSTs a second Meta sends for a number at TIER_100K: 80 messages a second, three
/// statuses each, one per POST.
const META_RATE: f64 = 240.0;

fn main() -> BenchResult<()> {
    shared::config::init_tracing();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    // The client, the proxy and the benchmark's reads run here; the webhook and the appliers on
    // runtimes of their own, as they are separate functions in AWS, so that the client's work
    // does not queue in front of the webhook's answers.
    let main_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build()
    };
    let (webhook_rt, applier_rt) = (runtime("webhook")?, runtime("applier")?);
    main_rt.block_on(async {
        let upstreams = Upstreams::from_env()?;
        let direct = |url: String| async move { shared::adapters::aws::sdk_config_at(&url) };
        // The benchmark's own reads (polling the counters, the recount, the queue's depth) go
        // straight to the emulators, so that the counts are the webhook's and the applier's.
        let ddb_direct = direct(upstreams.dynamodb.clone()).await;
        let sqs_direct = aws_sdk_sqs::Client::new(&direct(upstreams.other.clone()).await);
        let (proxy, counts) = counting_proxy(upstreams).await?;
        let sdk = direct(format!("http://{proxy}")).await;
        let config = Config {
            table_name: format!("bench-webhook-{}", uuid::Uuid::new_v4().simple()),
            whatsapp_app_secret: Some(SECRET.into()),
            whatsapp_verify_token: Some("bench".into()),
            ..Config::from_env()
        };
        let stack = local::Stack::start_with(&sdk, config).await?;
        let app = stack.app.clone();
        let reads = App::new(&ddb_direct, app.config.clone());
        let status_queue = app.config.status_queue_url.clone().ok_or("the stack has no status queue")?;
        let dead_letters = stack.queues.get("StatusDeadLetterQueue").cloned().ok_or("the stack has no status DLQ")?;
        let addr = webhook_rt.spawn(local::server::spawn(app.clone())).await??;
        let url = format!("http://{addr}/webhooks/whatsapp");
        let workers =
            local::workers::Workers { senders: 0, status_appliers: 2, reconcile_every: None, ..Default::default() };
        let (worker_app, worker_sqs) = (app.clone(), stack.sqs.clone());
        applier_rt.spawn(async move { drop(workers.spawn(worker_app, worker_sqs)) }).await?;

        let owner = account_and_template(&app).await;
        let http = reqwest::Client::new();
        // The webhook reads its secrets on its first request: keep that out of the figures.
        let empty = json!({"object": "whatsapp_business_account", "entry": []}).to_string();
        let warm = post_all(&http, &url, vec![empty], 1, None).await;
        if let Some(e) = warm.first_refusal {
            return Err(format!("the webhook refused a first, empty POST: {e}").into());
        }

        let rounds = [
            Round { name: "1 per POST, 240 POSTs/s", per_post: 1, in_flight: 1024, rate: Some(META_RATE) },
            Round { name: "1 per POST, 32 at once", per_post: 1, in_flight: 32, rate: None },
            Round { name: "1,000 per POST, 4 at once", per_post: 1000, in_flight: 4, rate: None },
        ];
        println!("webhook benchmark: {n} recipients marked sent, `delivered` then `read` for each, 2 status appliers");
        println!(
            "{:<26} {:>8} {:>6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>7}",
            "round",
            "statuses",
            "POSTs",
            "post s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "non-200",
            "applied s",
            "ddb/st",
            "sqs/st",
            "WRU/st",
            "recount"
        );
        let mut notes = Vec::new();
        for round in &rounds {
            let (campaign, sent) = sent_campaign(&app, &owner, n).await?;
            let at = chrono::Utc::now().timestamp();
            let delivered = pass(&campaign, &sent, "delivered", at, round.per_post);
            let read = pass(&campaign, &sent, "read", at + 1, round.per_post);
            let (statuses, posts) = (2 * n, delivered.len() + read.len());

            // What an earlier round left would be applied, and counted, in this one.
            let earlier = queue_drained(&sqs_direct, &status_queue, APPLY_TIMEOUT).await?;
            if earlier > 0 {
                notes.push(format!("  {}: {earlier} messages of the round before still queued", round.name));
            }
            let dead_before = depth(&sqs_direct, &dead_letters).await?;
            let before = counts.snapshot();
            let started = Instant::now();
            let mut answers = post_all(&http, &url, delivered, round.in_flight, round.rate).await;
            let second = post_all(&http, &url, read, round.in_flight, round.rate).await;
            let posting = started.elapsed();
            answers.latencies.extend(second.latencies);
            answers.refused += second.refused;
            answers.first_refusal = answers.first_refusal.or(second.first_refusal);
            let applied = applied_after(&reads, &campaign, n as u64, started).await;
            // The applier's last deletes belong to the round.
            let left = queue_drained(&sqs_direct, &status_queue, Duration::from_secs(10)).await?;
            let after = counts.snapshot();
            let dead = depth(&sqs_direct, &dead_letters).await?.saturating_sub(dead_before);

            let (ddb, ddb_detail) = per(&after, &before, "DynamoDB_20120810.", statuses);
            let (sqs, sqs_detail) = per(&after, &before, "AmazonSQS.", statuses);
            let wru = write_units_per(&after, &before, statuses);
            let mut sorted = answers.latencies;
            sorted.sort();
            let (p50, p99, max) = (quantile_ms(&sorted, 0.5), quantile_ms(&sorted, 0.99), quantile_ms(&sorted, 1.0));
            println!(
                "{:<26} {statuses:>8} {posts:>6} {:>8.2} {p50:>7.1} {p99:>7.1} {max:>7.1} {:>7} {:>9} {ddb:>8.3} \
                 {sqs:>8.3} {wru:>8.2} {:>7}",
                round.name,
                posting.as_secs_f64(),
                answers.refused,
                applied.map(|d| format!("{:.2}", d.as_secs_f64())).unwrap_or_else(|| "not all".into()),
                recount(&reads, &campaign, n as u64).await,
            );
            // The breakdown only where it explains something: a missed target or a leftover.
            if (round.rate.is_some() && p99 > P99_TARGET_MS) || (round.per_post == 1 && ddb > DDB_PER_STATUS_TARGET) {
                notes.push(format!(
                    "  {}: p99 {p99:.1} ms (target ≤ {P99_TARGET_MS}), DynamoDB/status {ddb:.3}; DynamoDB: \
                     {ddb_detail}; SQS: {sqs_detail}",
                    round.name
                ));
            }
            if let Some(e) = answers.first_refusal {
                notes.push(format!("  {}: first answer other than 200: {e}", round.name));
            }
            if left > 0 || dead > 0 {
                notes.push(format!(
                    "  {}: {left} messages still on the status queue, {dead} moved to its dead-letter queue",
                    round.name
                ));
            }
        }
        println!(
            "(latency: client-side, per POST, from its send to the end of its answer; 240 POSTs/s is Meta's rate for a number \
             at TIER_100K, 32 at once is as fast as one local process takes them; applied: from the first \
             POST until the counters show every status; per status: requests of the webhook and of the appliers, idle \
             polling included — in one process concurrent POSTs share SQS batch requests, in Lambda each invocation \
             sends its own; write units estimated as on-demand bills them; targets: p99 ≤ {P99_TARGET_MS} ms locally at Meta's rate, \
             ≤ {DDB_PER_STATUS_TARGET} DynamoDB requests per status at one status per POST)"
        );
        for note in notes {
            println!("{note}");
        }
        Ok::<_, local::BoxError>(())
    })
}
