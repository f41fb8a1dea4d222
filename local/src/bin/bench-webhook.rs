//! `bench-webhook`: how many delivery statuses one local webhook process absorbs. A campaign of
//! N recipients is marked sent (as the sender records them), then signed POSTs of 1,000
//! statuses each — `delivered` for every recipient, then `read`, then the `delivered` payloads
//! again (Meta's retries) — go to `/webhooks/whatsapp` over HTTP, 4 at a time. Prints, per
//! round, statuses per second, CPU time of the webhook process's threads per status, and
//! DynamoDB requests per status. Run by `scripts/bench.sh webhook`. Not a test: it prints
//! figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{StreamExt, stream};
use http::Method;
use local::bench::{call, counting_proxy, per, thread_cpu};
use serde_json::{Value, json};
use shared::api::App;
use shared::config::Config;

const PER_POST: usize = 1000;
const CONCURRENT_POSTS: usize = 4;
const SECRET: &str = "bench-app-secret";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A campaign of `n` recipients, each recorded as sent with its own wamid, the way the
/// sender records an accepted message. Returns (campaign id, [(phone, wamid)]).
async fn sent_campaign(app: &Arc<App>, n: usize) -> (String, Vec<(String, String)>) {
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
    let campaign = post(
        "/api/campaigns",
        json!({"name": "bench", "account_id": account["id"], "template_id": template["id"],
               "variable_mapping": {"1": "name"}}),
    )
    .await;
    let id = campaign["id"].as_str().unwrap_or_default().to_string();
    let phones: Vec<String> = (0..n).map(|i| format!("+1415{:03}{:04}", 200 + i / 10_000, i % 10_000)).collect();
    let csv: String = std::iter::once("phone_number,name\n".to_string())
        .chain(phones.iter().map(|p| format!("{p},Customer\n")))
        .collect();
    call(app, Method::POST, &format!("/api/campaigns/{id}/recipients/import"), "text/csv", csv).await;
    let sent: Vec<(String, String)> =
        phones.into_iter().map(|p| (p, format!("wamid.{}", uuid::Uuid::new_v4().simple()))).collect();
    let db = &app.db;
    stream::iter(&sent)
        .for_each_concurrent(16, |(phone, wamid)| {
            let id = &id;
            async move {
                let update = db
                    .client()
                    .update_item()
                    .table_name(db.table())
                    .key("PK", s(format!("CAMPAIGN#{id}")))
                    .key("SK", s(format!("R#{phone}")))
                    .update_expression("SET #s = :s, wamid = :w, sent_at = :t, GSI2PK = :g2, GSI3PK = :g3, GSI3SK = :r")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(":s", s("sent"))
                    .expression_attribute_values(":w", s(wamid))
                    .expression_attribute_values(":t", s(shared::domain::now()))
                    .expression_attribute_values(":g2", s(format!("CAMPAIGN#{id}#sent")))
                    .expression_attribute_values(":g3", s(format!("WAMID#{wamid}")))
                    .expression_attribute_values(":r", s("R"));
                if let Err(e) = update.send().await {
                    panic!("marking {phone} sent: {e}");
                }
            }
        })
        .await;
    (id, sent)
}

/// The POST bodies of one round: `status` for every recipient, 1,000 to a POST, each with the
/// sender's callback key as Meta echoes it.
fn round(campaign: &str, sent: &[(String, String)], status: &str) -> Vec<String> {
    let at = chrono::Utc::now().timestamp().to_string();
    sent.chunks(PER_POST)
        .map(|chunk| {
            let statuses: Vec<Value> = chunk
                .iter()
                .map(|(phone, wamid)| {
                    json!({"id": wamid, "status": status, "timestamp": at, "recipient_id": phone.trim_start_matches('+'),
                           "biz_opaque_callback_data": format!("{campaign}/{phone}")})
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

/// Posts the bodies, signed, `CONCURRENT_POSTS` at a time; returns the elapsed time.
async fn post_all(url: &str, bodies: Vec<String>) -> Duration {
    let http = reqwest::Client::new();
    let started = Instant::now();
    stream::iter(bodies)
        .for_each_concurrent(CONCURRENT_POSTS, |body| {
            let http = http.clone();
            async move {
                let signature = shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
                let res = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => panic!("webhook answered {}: {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => panic!("webhook unreachable: {e}"),
                }
            }
        })
        .await;
    started.elapsed()
}

fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let main_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The webhook's own runtime, so that its CPU time is measured apart from the client's.
    let webhook_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("webhook").enable_all().build()?;
    main_rt.block_on(async {
        let upstream = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL must point at the emulator")?;
        let (proxy, counts) = counting_proxy(upstream).await?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://{proxy}"))
            .load()
            .await;
        let config = Config {
            table_name: format!("bench-webhook-{}", uuid::Uuid::new_v4().simple()),
            whatsapp_app_secret: Some(SECRET.into()),
            whatsapp_verify_token: Some("bench".into()),
            ..Config::from_env()
        };
        let stack = local::Stack::start_with(&sdk, config).await?;
        let app = stack.app.clone();
        let addr = webhook_rt.spawn(local::server::spawn(app.clone())).await??;
        let url = format!("http://{addr}/webhooks/whatsapp");
        let (campaign, sent) = sent_campaign(&app, n).await;

        println!("webhook benchmark: one local webhook process against the emulator");
        println!("{n} recipients, POSTs of {PER_POST} statuses, {CONCURRENT_POSTS} at a time, signed");
        println!(
            "{:<22} {:>9} {:>9} {:>12} {:>15} {:>15}",
            "round", "statuses", "seconds", "statuses/s", "cpu µs/status", "ddb req/status"
        );
        let mut details = Vec::new();
        for (name, status) in [("delivered", "delivered"), ("read", "read"), ("delivered again", "delivered")] {
            let bodies = round(&campaign, &sent, status);
            let (before, cpu_before) = (counts.snapshot(), thread_cpu("webhook"));
            let elapsed = post_all(&url, bodies).await;
            let (after, cpu) = (counts.snapshot(), thread_cpu("webhook") - cpu_before);
            let (ddb, detail) = per(&after, &before, "DynamoDB_20120810.", n);
            let secs = elapsed.as_secs_f64();
            println!(
                "{name:<22} {n:>9} {secs:>9.2} {:>12.0} {:>15.1} {ddb:>15.3}",
                n as f64 / secs,
                1e6 * cpu / n as f64
            );
            details.push(format!("{name}: DynamoDB per status: {detail}"));
        }
        let c = call(&app, Method::GET, &format!("/api/campaigns/{campaign}"), "application/json", "").await;
        println!();
        println!(
            "campaign counters after the rounds: delivered {} read {} (expected {n} and {n})",
            c["delivered_count"], c["read_count"]
        );
        for d in details {
            println!("{d}");
        }
        println!("(seconds are bound by the emulator, a single Python process; CPU is the webhook's own threads)");
        Ok::<_, local::BoxError>(())
    })
}
