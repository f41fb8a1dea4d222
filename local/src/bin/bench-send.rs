//! `bench-send`: the sending side at the load it exists for, on one local stack — the emulators
//! (DynamoDB in a process of its own), the dispatcher, 8 sender workers, 2 status appliers, the
//! reconciler, the webhook route over HTTP, and the fake WhatsApp API answering in 200 ± 100 ms
//! and posting every status (sent, delivered, read) in a signed POST of its own, as Meta mostly
//! does. Per scenario it prints the rate reached against the tier's, the worst 1-second window,
//! DynamoDB requests and write units per message (the sender's and its statuses' together), SQS
//! requests per message, the webhook POSTs refused, and how long after the last send every
//! status was applied; first, the emulators' own ceiling on a trivial request. Run by
//! `scripts/bench.sh send`, which starts the emulators. Not a test: it prints figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::Method;
use local::bench::{Upstreams, busiest_second, call, counting_proxy, per, write_units_per};
use local::fake_whatsapp::{self, FakeConfig, FakeState};
use serde_json::{Value, json};
use shared::app::App;
use shared::config::Config;

const SECRET: &str = "bench-app-secret";

/// One campaign to run: its account's tier (and `throughput_mps`), how many recipients.
#[derive(Clone, Copy)]
struct Run {
    tier: &'static str,
    mps: u32,
    rate: u32,
    recipients: usize,
}

/// What a scenario measured for one campaign.
struct Measured {
    sent: usize,
    achieved: f64,
    worst: usize,
    per_second: Vec<usize>,
    /// When the first message went out (unix milliseconds).
    first_ms: u64,
    statuses_applied_after: Option<f64>,
}

/// Creates an account, an approved template and a campaign of `n` recipients; returns
/// (campaign id, phone_number_id).
async fn prepare(app: &Arc<App>, run: Run, tag: u32) -> (String, String) {
    let post = |path: &'static str, body: Value| call(app, Method::POST, path, "application/json", body.to_string());
    let phone_number_id = format!("9{tag:05}");
    // Each campaign's account in a business portfolio of its own: the tier's 24-hour cap counts
    // per portfolio, and every run starts with an empty window.
    let business = format!("8{tag:05}");
    let account = post(
        "/api/accounts",
        json!({"name": run.tier, "phone_number_id": phone_number_id, "business_account_id": business,
               "access_token": "bench-token", "messaging_limit_tier": run.tier, "throughput_mps": run.mps}),
    )
    .await;
    let template = post(
        "/api/templates",
        json!({"account_id": account["id"], "name": "bench", "language": "en_US", "category": "MARKETING",
               "status": "APPROVED", "components": [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}]}),
    )
    .await;
    let campaign = post(
        "/api/campaigns",
        json!({"name": run.tier, "account_id": account["id"], "template_id": template["id"],
               "variable_mapping": {"1": "name", "2": "code"}}),
    )
    .await;
    let id = campaign["id"].as_str().unwrap_or_default().to_string();
    let mut csv = String::from("phone_number,name,code\n");
    for i in 0..run.recipients {
        // Valid US numbers, one exchange per campaign (up to 10,000 recipients each).
        csv.push_str(&format!("+1415{:03}{:04},Customer {i},C{i}\n", 200 + tag % 700, i));
    }
    call(app, Method::POST, &format!("/api/campaigns/{id}/recipients/import"), "text/csv", csv).await;
    (id, phone_number_id)
}

async fn start(app: &Arc<App>, id: &str) {
    call(app, Method::POST, &format!("/api/campaigns/{id}/start"), "application/json", "{}").await;
}

/// Waits until the campaign has completed and every status of its messages is applied
/// (delivered and read for each), or nothing moved for 60 s; returns the campaign.
async fn settle(app: &Arc<App>, id: &str) -> Value {
    let (mut last, mut since) = (Value::Null, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let c = call(app, Method::GET, &format!("/api/campaigns/{id}"), "application/json", "").await;
        let sent = c["sent_count"].as_u64().unwrap_or(0);
        if c["status"] == "completed" && c["delivered_count"] == sent && c["read_count"] == sent {
            return c;
        }
        let progress = json!([c["processed_count"], c["delivered_count"], c["read_count"]]);
        if progress != last {
            (last, since) = (progress, Instant::now());
        }
        if since.elapsed() > Duration::from_secs(60) {
            eprintln!("campaign {id} did not settle: {c}");
            return c;
        }
    }
}

/// What reached the fake for the account of `pnid`; `settled_at_ms` is when every status of the
/// campaign was seen applied (the campaign is read every 250 ms: accurate to about that).
fn measure(fake: &FakeState, pnid: &str, settled_at_ms: u64, settled: bool) -> Measured {
    let mut times: Vec<u64> =
        fake.requests().iter().filter(|r| r.phone_number_id == pnid && r.accepted()).map(|r| r.at_ms).collect();
    times.sort_unstable();
    let sent = times.len();
    let (first, last) = (times.first().copied().unwrap_or(0), times.last().copied().unwrap_or(0));
    let span = (last - first) as f64 / 1000.0;
    let achieved = if span > 0.0 { (sent.saturating_sub(1)) as f64 / span } else { 0.0 };
    let worst = busiest_second(&times);
    let mut per_second = vec![0; (span as usize) + 1];
    for t in &times {
        per_second[((t - first) / 1000) as usize] += 1;
    }
    let statuses_applied_after = settled.then(|| settled_at_ms.saturating_sub(last) as f64 / 1000.0);
    Measured { sent, achieved, worst, per_second, first_ms: first, statuses_applied_after }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Requests a second one emulator process answers on a trivial request (16 at a time, 2 s).
async fn ceiling(sdk: &shared::adapters::aws::SdkConfig, dynamodb: bool) -> f64 {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // The emulator loads a service's code on its first request: not part of the figure.
    let _ = (ddb.list_tables().limit(1).send().await, sqs.list_queues().max_results(1).send().await);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let until = Instant::now() + Duration::from_secs(2);
    join_all((0..16).map(|_| async {
        while Instant::now() < until {
            let ok = if dynamodb {
                ddb.list_tables().limit(1).send().await.is_ok()
            } else {
                sqs.list_queues().max_results(1).send().await.is_ok()
            };
            if ok {
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }))
    .await;
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / 2.0
}

/// Items a second the DynamoDB emulator writes as the sender does (25 conditional updates
/// shaped like its outcomes to a BatchExecuteStatement, 4 at a time, 3 s), to the stack's table: every message needs
/// four such writes (its claim, its outcome, `delivered`, `read`), so a quarter of this is the
/// most messages a second the emulator can take, whatever the service does.
async fn batch_update_ceiling(db: &shared::adapters::store::Db) -> f64 {
    use aws_sdk_dynamodb::types::{AttributeValue, Update};
    let s = |v: String| AttributeValue::S(v);
    let key = |w: usize, i: usize| [("PK", s(format!("BENCH#ceiling{w}"))), ("SK", s(format!("R#{i}")))];
    // The items first: a PartiQL UPDATE changes an item that exists.
    for w in 0..4 {
        for i in 0..25 {
            let [(pk, pv), (sk, sv)] = key(w, i);
            let put = db.client().put_item().table_name(db.table()).item(pk, pv).item(sk, sv);
            put.send().await.ok();
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let until = Instant::now() + Duration::from_secs(3);
    join_all((0..4).map(|w| {
        let done = &done;
        async move {
            while Instant::now() < until {
                let updates: Vec<Update> = (0..25)
                    .filter_map(|i| {
                        let [(pk, pv), (sk, sv)] = key(w, i);
                        Update::builder()
                            .table_name(db.table())
                            .key(pk, pv)
                            .key(sk, sv)
                            // Shaped like the sender's outcome: five attributes set, five removed.
                            .update_expression(
                                "SET #s = :s, wamid = :w, sent_at = :t, GSI3PK = :g, GSI3SK = :r \
                                 REMOVE claim_id, claimed_at, retry_at, GSI2PK, GSI2SK",
                            )
                            .condition_expression("attribute_not_exists(#s) OR (#s <> :x AND #s <> :y)")
                            .expression_attribute_names("#s", "status")
                            .expression_attribute_values(":s", s("sent".into()))
                            .expression_attribute_values(":w", s(format!("wamid.{w}.{i}")))
                            .expression_attribute_values(":g", s(format!("WAMID#wamid.{w}.{i}")))
                            .expression_attribute_values(":r", s("R".into()))
                            .expression_attribute_values(":x", s("gone".into()))
                            .expression_attribute_values(":y", s("failed".into()))
                            .expression_attribute_values(":t", AttributeValue::N(now_ms().to_string()))
                            .build()
                            .ok()
                    })
                    .collect();
                if let Ok(written) = db.update_each(&updates).await {
                    done.fetch_add(written.iter().filter(|w| **w).count(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }))
    .await;
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / 3.0
}

struct Scenario {
    name: &'static str,
    main: Run,
    /// A slower campaign on another account, started 2 s before the main one.
    beside: Option<Run>,
}

fn main() -> Result<(), local::BoxError> {
    shared::config::init_tracing();
    let seconds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(25);
    // Optional: only the scenarios whose name contains this.
    let only = std::env::args().nth(2).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let upstreams = Upstreams::from_env()?;
        let direct = |url: String| async move { shared::adapters::aws::sdk_config_at(&url) };
        let ddb_ceiling = ceiling(&direct(upstreams.dynamodb.clone()).await, true).await;
        let sqs_ceiling = ceiling(&direct(upstreams.other.clone()).await, false).await;
        let separate = upstreams.dynamodb != upstreams.other;
        let (proxy_addr, counts) = counting_proxy(upstreams).await?;
        let sdk = direct(format!("http://{proxy_addr}")).await;

        let fake = FakeState::new();
        let fake_addr = fake_whatsapp::spawn(fake.clone()).await?;
        let config = Config {
            table_name: format!("bench-{}", now_ms()),
            whatsapp_api_url: format!("http://{fake_addr}"),
            whatsapp_app_secret: Some(SECRET.into()),
            whatsapp_verify_token: Some("bench".into()),
            ..Config::from_env()
        };
        let stack = local::Stack::start_with(&sdk, config).await?;
        let api = local::server::spawn(stack.app.clone()).await?;
        fake.set_config(FakeConfig {
            latency_ms: 200,
            latency_jitter_ms: 100,
            statuses_per_post: 1,
            webhook_url: Some(format!("http://{api}/webhooks/whatsapp")),
            app_secret: Some(SECRET.into()),
            ..FakeConfig::default()
        });
        let workers = local::workers::Workers { senders: 8, status_appliers: 2, ..Default::default() };
        workers.spawn(stack.app.clone(), stack.sqs.clone());

        println!("send benchmark: one local stack, WhatsApp answering in 200 ± 100 ms, every status in its own signed POST");
        let items = batch_update_ceiling(&stack.app.db).await;
        println!(
            "emulator ceiling in conditional batch updates (25 to a BatchExecuteStatement): {items:.0} items written a \
             second; four per message (claim, outcome, delivered, read): at most {:.0} msg/s locally",
            items / 4.0
        );
        println!(
            "emulator ceiling on a trivial request: DynamoDB {ddb_ceiling:.0} req/s, SQS and the rest {sqs_ceiling:.0} req/s ({})",
            if separate { "two processes" } else { "one process" }
        );
        let runs = |tier, mps, rate| Run { tier, mps, rate, recipients: rate as usize * seconds };
        let scenarios = [
            Scenario { name: "TIER_10K", main: runs("TIER_10K", 80, 30), beside: None },
            Scenario { name: "TIER_100K", main: runs("TIER_100K", 80, 80), beside: None },
            // Beside right after alone, so that both meet the same emulator (whose index
            // queries slow down as the table grows).
            Scenario {
                name: "TIER_100K beside TIER_1K",
                main: runs("TIER_100K", 80, 80),
                beside: Some(Run { recipients: 10 * (seconds + 10), ..runs("TIER_1K", 80, 10) }),
            },
            // Two accounts at the TIER_100K pace at once: each keeps its own.
            Scenario {
                name: "TIER_100K beside TIER_100K",
                main: runs("TIER_100K", 80, 80),
                beside: Some(Run { recipients: 80 * (seconds + 10), ..runs("TIER_100K", 80, 80) }),
            },
            Scenario { name: "TIER_UNLIMITED 200", main: runs("TIER_UNLIMITED", 200, 200), beside: None },
        ];
        println!(
            "{:<26} {:>6} {:>6} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7}",
            "scenario", "msgs", "target", "msg/s", "ratio", "worst 1s", "ddb/msg", "WRU/msg", "sqs/msg", "refused", "applied +s",
            "recount"
        );
        let mut details = Vec::new();
        let mut alone_100k = None;
        for (i, sc) in scenarios.iter().enumerate().filter(|(_, sc)| sc.name.contains(only.as_str())) {
            let tag = 10 * i as u32 + 1;
            let (id, pnid) = prepare(&stack.app, sc.main, tag).await;
            let beside = match sc.beside {
                Some(run) => {
                    let (bid, bpnid) = prepare(&stack.app, run, tag + 1).await;
                    start(&stack.app, &bid).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Some((bid, bpnid, run))
                }
                None => None,
            };
            let (before, before_ms) = (counts.snapshot(), now_ms());
            let posts_before = fake.webhook_count();
            start(&stack.app, &id).await;
            let c = settle(&stack.app, &id).await;
            let settled = c["status"] == "completed" && c["read_count"] == c["sent_count"];
            let m = measure(&fake, &pnid, now_ms(), settled);
            let (after, after_ms) = (counts.snapshot(), now_ms());
            let posts = fake.webhooks();
            let failures: Vec<_> = posts[posts_before.min(posts.len())..].iter().filter(|p| !p.succeeded()).collect();
            let refused = failures.len();
            if refused > 0 {
                let mut why: BTreeMap<String, usize> = BTreeMap::new();
                for p in &failures {
                    *why.entry(p.status.map(|s| s.to_string()).or(p.error.clone()).unwrap_or_default()).or_default() += 1;
                }
                details.push(format!("{}: status POSTs that failed, by answer or error: {why:?}", sc.name));
            }
            let first_second = m.first_ms / 1000;
            let slowest: Vec<u64> = (first_second..=first_second + m.per_second.len() as u64)
                .map(|s| after.get(&format!("{}{s}", local::bench::SLOWEST_PREFIX)).copied().unwrap_or(0))
                .collect();
            details.push(format!("{}: slowest DynamoDB answer (ms) each second: {slowest:?}", sc.name));
            let (slow, slow_detail) = per(&after, &before, local::bench::SLOW_PREFIX, 1);
            if slow > 0.0 {
                details.push(format!("{}: emulator answers slower than 0.5 s: {slow_detail}", sc.name));
            }
            // Requests and write units per message sent meanwhile, the other campaign's included
            // (its requests are in the counts).
            let beside_sent = beside.as_ref().map_or(0, |(_, bpnid, _)| {
                let during = |r: &&fake_whatsapp::Recorded| (before_ms..=after_ms).contains(&r.at_ms);
                fake.requests().iter().filter(|r| r.phone_number_id == *bpnid && r.accepted()).filter(during).count()
            });
            let sent_meanwhile = m.sent + beside_sent;
            let (ddb, ddb_detail) = per(&after, &before, "DynamoDB_20120810.", sent_meanwhile);
            let (sqs, sqs_detail) = per(&after, &before, "AmazonSQS.", sent_meanwhile);
            let wru = write_units_per(&after, &before, sent_meanwhile);
            let recount = local::bench::recount(&stack.app.db, &id).await;
            if let Ok(r) = &recount
                && !settled
            {
                // What became of the statuses of messages left unread: posted, taken, or never.
                if let Some(url) = stack.queues.get("StatusQueue") {
                    // Statuses waiting on the queue (delayed for a retry, or in an applier's hands).
                    use aws_sdk_sqs::types::QueueAttributeName as A;
                    let names = [A::ApproximateNumberOfMessages, A::ApproximateNumberOfMessagesDelayed, A::ApproximateNumberOfMessagesNotVisible];
                    let attrs = stack.sqs.get_queue_attributes().queue_url(url).set_attribute_names(Some(names.to_vec())).send().await;
                    let shown = attrs.ok().and_then(|a| a.attributes).map(|a| format!("{a:?}")).unwrap_or_default();
                    details.push(format!("{}: the status queue now: {shown}", sc.name));
                }
                for (wamid, status) in &r.unread {
                    let tried: Vec<String> = posts
                        .iter()
                        .filter_map(|p| {
                            let st = p.statuses.iter().find(|(w, _)| w == wamid)?;
                            Some(format!("{} #{} → {:?} {:?}", st.1, p.attempt, p.status, p.error))
                        })
                        .collect();
                    details.push(format!("{}: {wamid} ({status}) not read; its status POSTs: {tried:?}", sc.name));
                }
            }
            let recounted = match recount.map(|r| r.check(&c)) {
                Ok(Ok(())) => "yes".to_string(),
                Ok(Err(differ)) => {
                    details.push(format!("{}: counters differ from a recount: {differ}", sc.name));
                    "NO".to_string()
                }
                Err(e) => {
                    details.push(format!("{}: not recounted: {e}", sc.name));
                    "?".to_string()
                }
            };
            let target = if sc.main.tier == "TIER_UNLIMITED" { sc.main.mps } else { sc.main.rate } as f64;
            let ratio = m.achieved / target;
            if sc.name == "TIER_100K" {
                alone_100k = Some(m.achieved);
            }
            println!(
                "{:<26} {:>6} {:>6} {:>8.1} {:>7.1}% {:>10} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>10} {:>7}",
                sc.name,
                m.sent,
                target,
                m.achieved,
                100.0 * ratio,
                format!("{} (≤{})", m.worst, target as u32 + 1),
                ddb,
                wru,
                sqs,
                refused,
                m.statuses_applied_after.map(|s| format!("{s:.1}")).unwrap_or("not all".into()),
                recounted,
            );
            details.push(format!(
                "{}: messages per second from {} {:?}\n  DynamoDB per message: {ddb_detail}\n  SQS per message: {sqs_detail}",
                sc.name,
                chrono::DateTime::from_timestamp_millis(m.first_ms as i64).map_or(String::new(), |t| t.format("%H:%M:%S%.3f").to_string()),
                m.per_second
            ));
            if let Some((bid, bpnid, run)) = beside {
                if let Some(alone) = alone_100k {
                    details.push(format!(
                        "  beside the {} campaign, TIER_100K reached {:.1} msg/s, {:+.1}% against alone ({alone:.1})",
                        run.tier,
                        m.achieved,
                        100.0 * (m.achieved - alone) / alone
                    ));
                }
                let b = settle(&stack.app, &bid).await;
                let bm = measure(&fake, &bpnid, now_ms(), b["status"] == "completed");
                details.push(format!(
                    "  the {} campaign: {} messages at {:.1} msg/s, worst 1 s {} (≤{})",
                    run.tier,
                    bm.sent,
                    bm.achieved,
                    bm.worst,
                    run.rate + 1
                ));
            }
        }
        println!();
        for d in details {
            println!("{d}");
        }
        println!(
            "(per message: the sender's requests and its three statuses' together, the workers' idle polling and the \
             benchmark's own reads included; write units estimated from each write request as on-demand bills them)"
        );
        Ok::<_, local::BoxError>(())
    })
}
