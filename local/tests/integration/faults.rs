//! Fault tests in the local stack: the emulator going away and coming back in the middle of a
//! campaign, a sender worker killed mid-batch, WhatsApp answering slowly or not at all, and
//! messages in the dead-letter queues listed and redriven.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use local::fake_whatsapp::{FakeConfig, Injection};
use serde_json::{Value, json};
use shared::domain::id::Id;
use shared::domain::phone::Phone;
use shared::domain::sending::SendJob;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::stack::{TestStack, phones};

/// A TCP switch in front of the emulator. The emulator keeps its data in memory only, so it
/// cannot really be stopped and started again without losing the table; switching this off
/// does to the stack what a stopped emulator does (open connections reset, new ones closed at
/// once, and counted, so a test can tell the outage was felt), and switching it on again
/// brings the same emulator back.
struct Switch {
    addr: SocketAddr,
    off: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Switch {
    async fn new() -> Arc<Switch> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's endpoint");
        let upstream: SocketAddr =
            endpoint.trim_start_matches("http://").trim_end_matches('/').parse().expect("host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let switch = Arc::new(Switch {
            addr: listener.local_addr().unwrap(),
            off: Default::default(),
            refused: Default::default(),
            connections: Default::default(),
        });
        let (off, refused, connections) = (switch.off.clone(), switch.refused.clone(), switch.connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if off.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue; // dropped: closed at once
                }
                let piping = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().unwrap().push(piping);
            }
        });
        switch
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn on(&self) {
        self.off.store(false, Ordering::SeqCst);
    }

    fn off(&self) {
        self.off.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Connections closed at once while the switch was off.
    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// The end state every fault must leave: each recipient settled (sent or failed, none pending
/// or claimed), no number sent twice, a sent recipient's message reached WhatsApp exactly once,
/// and the counters equal a recount.
async fn assert_settled_once(t: &TestStack, campaign: &str, numbers: &[String]) -> Vec<Value> {
    let c = t.get(&format!("/api/campaigns/{campaign}")).await.data().clone();
    let rs = t.recipients(campaign).await;
    assert_eq!(rs.len(), numbers.len());
    let h = t.hits();
    assert!(h.values().all(|n| *n == 1), "a number reached WhatsApp twice: {h:?}");
    for r in &rs {
        let phone = r["phone_number"].as_str().unwrap();
        match r["status"].as_str().unwrap() {
            "sent" | "delivered" | "read" => assert_eq!(h.get(phone), Some(&1), "{r}"),
            "failed" => assert!(r["error_message"].is_string(), "{r}"),
            other => panic!("recipient left {other}: {r}"),
        }
    }
    let count = |s: &[&str]| rs.iter().filter(|r| s.contains(&r["status"].as_str().unwrap())).count() as u64;
    assert_eq!(c["sent_count"].as_u64(), Some(count(&["sent", "delivered", "read"])), "{c}");
    assert_eq!(c["failed_count"].as_u64(), Some(count(&["failed"])), "{c}");
    assert_eq!(c["status"], "completed", "{c}");
    rs
}

#[tokio::test]
async fn the_emulator_going_away_mid_campaign_loses_nothing_and_sends_nothing_twice() {
    let switch = Switch::new().await;
    let t = TestStack::sending_via(Some(&switch.endpoint()), 2, |_| {}).await;
    let numbers = phones(3000, 400);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(30), |c| c["sent_count"].as_u64().unwrap_or(0) >= 40).await;

    switch.off();
    let sent_before = t.fake.requests().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent_during = t.fake.requests().len();
    switch.on();

    t.wait_for(&c, Duration::from_secs(90), |c| c["status"] == "completed").await;
    let rs = assert_settled_once(&t, &c, &numbers).await;
    assert!(sent_before < numbers.len(), "the outage came in the middle of the campaign");
    assert!(switch.refused() > 0, "the stack felt the outage (its store requests were refused)");
    // Without the store nothing new is claimed: what left during the outage was claimed before.
    assert!(sent_during - sent_before <= 80, "{} sends during the outage", sent_during - sent_before);
    let failed: Vec<&Value> = rs.iter().filter(|r| r["status"] == "failed").collect();
    assert!(
        failed.iter().all(|r| r["error_message"].as_str().unwrap().contains("outcome unknown")),
        "only a send whose outcome could not be recorded may fail: {failed:?}"
    );
}

#[tokio::test]
async fn a_sender_killed_mid_batch_sends_nothing_twice_and_records_the_unknown_outcome() {
    let t = TestStack::sending(0).await;
    // A killed invocation's messages come back after the queue's visibility timeout (30
    // minutes for the send queue in AWS); here after 3 seconds.
    let send_queue = t.queues["SendQueue"].clone();
    let attrs = [(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "3".to_string())];
    t.sqs.set_queue_attributes().queue_url(&send_queue).set_attributes(Some(attrs.into())).send().await.unwrap();
    // More numbers than the jobs one worker takes slots for at once (two or three of 40 at
    // this tier), so the new workers have work left.
    let numbers = phones(3100, 200);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    // WhatsApp answers slowly, so that requests are in flight when the worker dies.
    t.fake.set_config(FakeConfig { latency_ms: 1500, ..FakeConfig::default() });
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);

    // The worker runs in its own runtime; dropping the runtime kills it mid-batch, like the
    // end of a Lambda invocation.
    let doomed = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    {
        let _inside = doomed.enter();
        t.spawn_workers(1);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.fake.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.shutdown_background();
    // A request the dead worker had already written still reaches the fake a moment later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill: Vec<String> = t.hits().into_keys().collect();
    let in_flight = before_kill.len();

    t.fake.set_config(FakeConfig::default());
    t.spawn_workers(2);
    t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    let rs = assert_settled_once(&t, &c, &numbers).await;
    // The dead worker's claims cannot tell a request in flight from one about to leave: the
    // reconciler records all of them as unknown once they are stale (at most about a second
    // and a half of the account's pace) and none is sent again; everything else is sent once.
    let unknown: Vec<&str> = rs
        .iter()
        .filter(|r| r["error_message"].as_str().is_some_and(|m| m.contains("outcome unknown")))
        .map(|r| r["phone_number"].as_str().unwrap())
        .collect();
    let sent = rs.iter().filter(|r| r["status"] == "sent").count();
    assert!(in_flight > 0, "the worker died with requests in flight");
    assert!(sent > 0, "the new workers sent what the dead one had not claimed");
    for phone in &before_kill {
        assert!(unknown.contains(&phone.as_str()), "{phone} left before the kill but is not unknown: {unknown:?}");
    }
    let unknown = unknown.len();
    assert_eq!(unknown + sent, numbers.len(), "nothing else failed");
    assert_eq!(t.fake.requests().len(), in_flight + sent, "only the new workers' sends followed the kill");
}

#[tokio::test]
async fn whatsapp_answering_slowly_or_not_at_all_never_leads_to_a_second_send() {
    let t = TestStack::sending(2).await;
    // Slow: every answer takes 2 seconds; no answer: the fake's timeout number waits 12
    // seconds, beyond the client's limit (3 seconds in the tests).
    t.fake.inject(Injection::delay(2000));
    t.fake.set_config(FakeConfig { timeout_ms: 12_000, ..FakeConfig::default() });
    let silent = "+14155559007".to_string();
    let mut numbers = phones(3200, 4);
    numbers.push(silent.clone());
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    let rs = assert_settled_once(&t, &c, &numbers).await;
    for r in &rs {
        if r["phone_number"] == silent.as_str() {
            assert_eq!(r["status"], "failed");
            assert!(r["error_message"].as_str().unwrap().contains("outcome unknown"), "{r}");
        } else {
            assert_eq!(r["status"], "sent", "a slow answer is still an answer: {r}");
        }
    }
    assert_eq!(t.hits().get(&silent), Some(&1), "a request without an answer is never repeated");
}

#[tokio::test]
async fn dead_lettered_messages_are_listed_and_can_be_redriven() {
    let t = TestStack::sending(0).await;
    let numbers = phones(3300, 2);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    // The campaign's dispatch is dropped, and its send job sits in the dead-letter queue, as
    // after five failed deliveries during an outage; beside it an unreadable message.
    t.sqs.purge_queue().queue_url(&t.queues["DispatchQueue"]).send().await.unwrap();
    let job = SendJob::new(&Id::parse(&c).unwrap(), None, numbers.iter().map(|n| Phone::e164(n).unwrap()).collect(), 0);
    let dlq = t.queues["SendDeadLetterQueue"].clone();
    t.sqs.send_message().queue_url(&dlq).message_body(serde_json::to_string(&job).unwrap()).send().await.unwrap();
    let garbage = "not a send job".to_string();
    t.sqs.send_message().queue_url(t.queues["SendQueue"].as_str()).message_body(&garbage).send().await.unwrap();
    t.spawn_workers(1);
    // The unreadable message fails every delivery and lands in the dead-letter queue.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = local::dead_letters::list(&t.sqs, &t.queues).await.unwrap();
        if listed.iter().map(|q| q.count).sum::<usize>() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let send_dlq = listed.iter().find(|q| q.queue == "SendDeadLetterQueue").expect("listed");
    assert_eq!((send_dlq.count, send_dlq.source.as_deref()), (2, Some("SendQueue")), "{listed:?}");
    assert!(send_dlq.sample.iter().any(|b| b == &garbage), "{listed:?}");
    assert!(t.fake.requests().is_empty());

    // Redriven, the job is sent; the unreadable message comes back to the dead-letter queue.
    let moved = local::dead_letters::redrive(&t.sqs, &t.queues, "SendDeadLetterQueue").await.unwrap();
    assert_eq!(moved, 2);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(t.fake.requests().len(), 2);
    assert!(local::dead_letters::redrive(&t.sqs, &t.queues, "SendQueue").await.is_err(), "not a dead-letter queue");
}
