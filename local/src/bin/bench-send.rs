//! `bench-send`: sends campaigns through one local stack (emulator, dispatcher, 4 sender
//! workers, fake WhatsApp API) and prints, per tier: achieved rate against the target, the worst
//! 1-second window, DynamoDB and SQS requests per message, and sender CPU time per message.
//! Run by `scripts/bench.sh send`, which starts the emulator. Not a test: it prints figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use local::bench::{call, counting_proxy, per, thread_cpu};
use local::fake_whatsapp::{self, FakeState};
use serde_json::{Value, json};
use shared::api::App;
use shared::config::Config;

/// Creates an account of `tier`, an approved template and a started campaign of `n` recipients;
/// waits for it to complete; returns (phone_number_id, elapsed).
async fn run_campaign(app: &Arc<App>, tier: &str, mps: u32, n: usize, tag: u32) -> (String, Duration) {
    let post = |path: &'static str, body: Value| call(app, Method::POST, path, "application/json", body.to_string());
    let phone_number_id = format!("9{tag:05}");
    let account = post(
        "/api/accounts",
        json!({"name": tier, "phone_number_id": phone_number_id, "business_account_id": "1",
        "access_token": "bench-token", "messaging_limit_tier": tier, "throughput_mps": mps}),
    )
    .await;
    let template = post("/api/templates", json!({"account_id": account["id"], "name": "bench", "language": "en_US",
        "category": "MARKETING", "status": "APPROVED", "components": [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}]}))
    .await;
    let campaign = post(
        "/api/campaigns",
        json!({"name": tier, "account_id": account["id"], "template_id": template["id"],
        "variable_mapping": {"1": "name", "2": "code"}}),
    )
    .await;
    let id = campaign["id"].as_str().unwrap_or_default().to_string();
    let mut csv = String::from("phone_number,name,code\n");
    for i in 0..n {
        csv.push_str(&format!("+1415{:03}{:04},Customer {i},C{i}\n", 200 + tag % 700, i));
    }
    call(app, Method::POST, &format!("/api/campaigns/{id}/recipients/import"), "text/csv", csv).await;
    let started = Instant::now();
    call(app, Method::POST, &format!("/api/campaigns/{id}/start"), "application/json", "{}").await;
    let (mut last, mut since) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c = call(app, Method::GET, &format!("/api/campaigns/{id}"), "application/json", "").await;
        let processed = c["sent_count"].as_u64().unwrap_or(0) + c["failed_count"].as_u64().unwrap_or(0);
        if processed != last {
            (last, since) = (processed, Instant::now());
        }
        if c["status"] != "sending" || since.elapsed() > Duration::from_secs(60) {
            if c["status"] != "completed" {
                eprintln!("campaign {tier} did not complete: {c}");
            }
            return (phone_number_id, started.elapsed());
        }
    }
}

fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(30);
    let unlimited_n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let main_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let sender_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("sender").enable_all().build()?;
    main_rt.block_on(async {
        let upstream = std::env::var("AWS_ENDPOINT_URL").map_err(|_| "AWS_ENDPOINT_URL must point at the emulator")?;
        let (proxy_addr, counts) = counting_proxy(upstream).await?;

        let fake = FakeState::new();
        let fake_addr = fake_whatsapp::spawn(fake.clone()).await?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://{proxy_addr}"))
            .load()
            .await;
        let config = Config {
            table_name: format!("bench-{}", chrono_free_stamp()),
            whatsapp_api_url: format!("http://{fake_addr}"),
            ..Config::from_env()
        };
        let stack = local::Stack::start_with(&sdk, config).await?;
        {
            let _in_sender_runtime = sender_rt.enter();
            local::workers::Workers::default().spawn(stack.app.clone(), stack.sqs.clone());
        }
        println!("send benchmark: one local stack (emulator, dispatcher, 4 sender workers, fake WhatsApp API)");
        println!("{:<15} {:>6} {:>8} {:>8} {:>9} {:>11} {:>9} {:>9} {:>12}", "tier", "msgs", "target", "msg/s", "achieved", "worst 1s", "ddb/msg", "sqs/msg", "cpu ms/msg");
        let scenarios = [
            ("TIER_1K", 80, 10),
            ("TIER_10K", 80, 30),
            ("TIER_100K", 80, 80),
            ("TIER_UNLIMITED", 1000, 1000),
        ];
        let mut details = Vec::new();
        for (tag, (tier, mps, rate)) in scenarios.into_iter().enumerate() {
            let n = if tier == "TIER_UNLIMITED" { unlimited_n } else { rate * seconds + 1 };
            let before = counts.snapshot();
            let cpu_before = thread_cpu("sender");
            let (pnid, _) = run_campaign(&stack.app, tier, mps, n, tag as u32 + 1).await;
            let cpu = thread_cpu("sender") - cpu_before;
            let after = counts.snapshot();
            let mut times: Vec<u64> =
                fake.requests().iter().filter(|r| r.phone_number_id == pnid && r.accepted()).map(|r| r.at_ms).collect();
            times.sort_unstable();
            let sent = times.len();
            let span = times.last().copied().unwrap_or(0).saturating_sub(times.first().copied().unwrap_or(0)) as f64 / 1000.0;
            let achieved = if span > 0.0 { (sent.saturating_sub(1)) as f64 / span } else { 0.0 };
            let mut worst = 0;
            let mut j = 0;
            for i in 0..times.len() {
                while j < times.len() && times[j] < times[i] + 1000 {
                    j += 1;
                }
                worst = worst.max(j - i);
            }
            let (ddb, ddb_detail) = per(&after, &before, "DynamoDB_20120810.", sent.max(1));
            let (sqs, sqs_detail) = per(&after, &before, "AmazonSQS.", sent.max(1));
            let target = if tier == "TIER_UNLIMITED" { "none".to_string() } else { rate.to_string() };
            let ratio = if tier == "TIER_UNLIMITED" { "-".to_string() } else { format!("{:.1}%", 100.0 * achieved / rate as f64) };
            println!(
                "{tier:<15} {sent:>6} {target:>8} {achieved:>8.1} {ratio:>9} {:>11} {ddb:>9.2} {sqs:>9.2} {:>12.2}",
                format!("{worst} (≤{})", rate + 1),
                1000.0 * cpu / sent.max(1) as f64
            );
            let longest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let mut per_second: Vec<usize> = vec![0; span as usize + 1];
            for t in &times {
                per_second[((t - times[0]) / 1000) as usize] += 1;
            }
            details.push(format!(
                "{tier}: over {span:.1} s, longest gap {longest_gap} ms, messages per second: {per_second:?}\n  DynamoDB per message: {ddb_detail}\n  SQS per message: {sqs_detail}"
            ));
        }
        println!();
        for d in details {
            println!("{d}");
        }
        println!("(requests include the workers' idle queue polling and the benchmark's own progress polling, once a second)");
        Ok::<_, local::BoxError>(())
    })
}

fn chrono_free_stamp() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
