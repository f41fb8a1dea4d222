//! The sending side under the conditions it exists for: pause and cancel within a second at
//! a fast tier, accounts that never hold each other back, a duplicate job racing the one that
//! holds its recipients, pause and resume at once, ambiguous answers from WhatsApp, throughput
//! errors, a count after the campaign was deleted, lost work found by the reconciler, and
//! failed messages retried after a short back-off.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use local::fake_whatsapp::{FakeAnswer, FakeConfig, Injection};
use serde_json::{Value, json};
use shared::domain::id::Id;
use shared::domain::sending::DispatchJob;
use shared::usecases::send::{Consumer, Incoming, consume, send_batch};

use crate::stack::{TestStack, job, phones};

fn count(c: &Value, k: &str) -> u64 {
    c[k].as_u64().unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Runs job A (every one of `numbers`) on a task of its own, and returns once the fake's
/// requests so far satisfy `sent` (10 s at most).
async fn hold(
    t: &TestStack,
    campaign: &str,
    numbers: &[String],
    deadline: Instant,
    sent: impl Fn(&HashMap<String, usize>) -> bool,
) -> tokio::task::JoinHandle<Vec<String>> {
    let app = t.app.clone();
    let a = job(campaign, numbers);
    let holder = tokio::spawn(async move { send_batch(&app, vec![a], deadline).await });
    let begun = Instant::now();
    while !sent(&t.hits()) {
        assert!(begun.elapsed() < Duration::from_secs(10), "job A did not send");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder
}

async fn start(t: &TestStack, campaign: &str) {
    t.post(&format!("/api/campaigns/{campaign}/start"), json!({})).await.assert_ok(200);
}

/// WhatsApp answering like Meta under load: 200 ms ± 100 ms.
fn realistic() -> FakeConfig {
    FakeConfig { latency_ms: 200, latency_jitter_ms: 100, ..FakeConfig::default() }
}

#[tokio::test]
async fn pause_and_cancel_stop_every_send_within_a_second_at_tier_100k() {
    let t = TestStack::sending(4).await;
    t.fake.set_config(realistic());
    for action in ["pause", "cancel"] {
        let numbers = phones(if action == "pause" { 0 } else { 2000 }, 1200);
        let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
        start(&t, &c).await;
        t.wait_for(&c, Duration::from_secs(30), |c| count(c, "sent_count") >= 150).await;
        t.post(&format!("/api/campaigns/{c}/{action}"), json!({})).await.assert_ok(200);
        let returned = now_ms();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let ours: Vec<u64> =
            t.fake.requests().iter().filter(|r| numbers.contains(r.to.as_ref().unwrap())).map(|r| r.at_ms).collect();
        let last = ours.iter().max().copied().unwrap_or(0);
        assert!(ours.len() < numbers.len(), "{action} came before the end");
        assert!(
            last < returned + 1000,
            "after {action}, a message left {} ms after it returned",
            last.saturating_sub(returned)
        );
        let c = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
        assert_eq!(count(&c, "sent_count") as usize, ours.len(), "what was sent is counted: {c}");
        assert_eq!(c["status"], if action == "pause" { "paused" } else { "cancelled" });
    }
}

#[tokio::test]
async fn pausing_one_of_two_campaigns_of_an_account_stops_it_within_a_second_and_not_the_other() {
    let t = TestStack::sending(4).await;
    t.fake.set_config(realistic());
    let first_numbers = phones(2000, 100);
    let (first, account) = t.campaign_with("TIER_1K", &first_numbers).await;
    let second_numbers = phones(2100, 100);
    let second = t.another_campaign(&account, &second_numbers).await;
    start(&t, &first).await;
    start(&t, &second).await;
    t.wait_for(&second, Duration::from_secs(30), |c| count(c, "sent_count") >= 15).await;
    t.post(&format!("/api/campaigns/{second}/pause"), json!({})).await.assert_ok(200);
    let returned = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let requests = t.fake.requests();
    let late = requests
        .iter()
        .filter(|r| second_numbers.contains(r.to.as_ref().unwrap()) && r.at_ms >= returned + 1000)
        .count();
    assert_eq!(late, 0, "messages of the paused campaign left more than a second after the pause");
    // The first campaign keeps the account's pace (10 msg/s): measured at WhatsApp over the
    // 5 s after the pause took effect, with half the pace as the floor for a loaded machine.
    let first_in_window = requests
        .iter()
        .filter(|r| first_numbers.contains(r.to.as_ref().unwrap()))
        .filter(|r| r.at_ms >= returned + 1000 && r.at_ms < returned + 6000)
        .count();
    assert!(first_in_window >= 25, "the other campaign goes on at the account's pace: {first_in_window} in 5 s");
}

#[tokio::test]
async fn a_slow_account_never_holds_back_another_account() {
    let t = TestStack::sending(4).await;
    t.fake.set_config(realistic());
    // A large TIER_1K campaign first (10 msg/s: minutes of work)…
    let slow_numbers = phones(3000, 1500);
    let (slow, _) = t.campaign_with("TIER_1K", &slow_numbers).await;
    start(&t, &slow).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // …then a TIER_100K campaign on another account.
    let fast_numbers = phones(5000, 200);
    let (fast, _) = t.campaign_with("TIER_100K", &fast_numbers).await;
    start(&t, &fast).await;
    t.wait_for(&fast, Duration::from_secs(60), |c| c["status"] == "completed").await;
    let slow_sent = t.fake.requests().iter().filter(|r| slow_numbers.contains(r.to.as_ref().unwrap())).count();
    // 200 messages at 80 msg/s take 2.5 s; behind the slow account's queue they would take
    // minutes. The slow one keeps its own pace meanwhile.
    assert!(slow_sent < 150, "the fast account finished only after {slow_sent} of the slow account's messages");
    let slow_c = t.get(&format!("/api/campaigns/{slow}")).await.data().clone();
    assert_eq!(slow_c["status"], "sending");
    assert!(count(&slow_c, "sent_count") >= 20, "{slow_c}");
}

#[tokio::test]
async fn a_duplicate_job_meeting_recipients_held_by_another_leaves_them_and_every_one_is_counted() {
    let t = TestStack::sending(0).await;
    let numbers = phones(4000, 4);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    // Job A holds p0..p3; p1's answer is slow, so A is still at work when B comes.
    t.fake.inject(Injection::delay(1500).to(numbers[1].as_str()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = hold(&t, &c, &numbers, deadline, |h| h.len() >= 4).await;
    // Job B = [p0] (a redelivery, a resume) while A holds p0: it leaves it alone.
    assert!(send_batch(&t.app, vec![job(&c, &numbers[..1])], deadline).await.is_empty());
    assert!(holder.await.unwrap().is_empty());
    // And once A recorded p0, B finds nothing to do either.
    assert!(send_batch(&t.app, vec![job(&c, &numbers[..1])], deadline).await.is_empty());
    let done = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!(
        (done["status"].as_str(), count(&done, "sent_count"), count(&done, "processed_count")),
        (Some("completed"), 4, 4)
    );
    assert!(numbers.iter().all(|p| t.hits().get(p) == Some(&1)));
}

#[tokio::test]
async fn pause_then_resume_at_once_completes_with_every_number_sent_once() {
    let t = TestStack::sending(4).await;
    t.fake.set_config(realistic());
    let numbers = phones(4100, 600);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    t.wait_for(&c, Duration::from_secs(30), |c| count(c, "sent_count") >= 100).await;
    t.post(&format!("/api/campaigns/{c}/pause"), json!({})).await.assert_ok(200);
    start(&t, &c).await;
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "failed_count")), (600, 0), "{done}");
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "each number exactly once across pause and resume");
}

/// A resume that comes while a job still holds recipients it is letting go of (it saw the
/// pause): the resumed dispatch finds them held and passes them by, so the job hands them on
/// itself once they are pending again. The reconciler is kept out of it (a stall takes 10
/// minutes here), so the campaign completes only if nothing was stranded.
#[tokio::test]
async fn recipients_let_go_of_after_a_resume_are_handed_on_and_the_campaign_completes() {
    let t = TestStack::sending_with(0, |c| c.stall_seconds = 600).await;
    let numbers = phones(4200, 5);
    // TIER_50: 5 a second, so job A's five slots span 800 ms.
    let (c, _) = t.campaign_with("TIER_50", &numbers).await;
    start(&t, &c).await;
    // A's first send answers after 2 s: A holds the others until then.
    t.fake.inject(Injection::delay(2000).to(numbers[0].as_str()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = hold(&t, &c, &numbers, deadline, |h| h.contains_key(&numbers[0])).await;
    t.post(&format!("/api/campaigns/{c}/pause"), json!({})).await.assert_ok(200);
    // A sees the pause at its next slots and lets those recipients go, but records only once
    // its first send is answered. The resume comes before that.
    tokio::time::sleep(Duration::from_millis(900)).await;
    start(&t, &c).await;
    let workers = t.spawn_workers(2);
    assert!(holder.await.unwrap().is_empty());
    let done = t.wait_for(&c, Duration::from_secs(20), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "failed_count")), (5, 0), "{done}");
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "each number exactly once: {h:?}");
    workers.iter().for_each(|w| w.abort());
}

#[tokio::test]
async fn ambiguous_answers_are_sent_once_and_recorded_as_outcome_unknown() {
    let t = TestStack::sending(2).await;
    let numbers = phones(4800, 8);
    let ambiguous = [FakeAnswer::NoWamid, FakeAnswer::Gateway502, FakeAnswer::Gateway504, FakeAnswer::Reset];
    for (answer, number) in ambiguous.into_iter().zip(&numbers) {
        t.fake.inject(Injection::answer(answer).to(number.as_str()));
    }
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "failed_count")), (4, 4), "{done}");
    let h = t.hits();
    for r in t.recipients(&c).await {
        let phone = r["phone_number"].as_str().unwrap();
        assert_eq!(h.get(phone), Some(&1), "exactly one POST for {phone}");
        if numbers[..4].iter().any(|n| n == phone) {
            assert_eq!(r["status"], "failed", "{r}");
            assert!(r["error_message"].as_str().unwrap().contains("outcome unknown"), "{r}");
        } else {
            assert_eq!(r["status"], "sent", "{r}");
        }
    }
}

/// A recipient that a retry job owns (`retry_at` a moment ahead) when a resume queues it again,
/// whose retry job is gone (it came while the campaign was paused, and was dropped): the
/// resumed run's job passes it on to a retry job of its own, due then. The reconciler is kept
/// out of it (a stall takes 10 minutes here), so the campaign completes only if that happens.
#[tokio::test]
async fn a_recipient_whose_retry_job_was_dropped_during_a_pause_is_sent_after_the_resume() {
    let t = TestStack::sending_with(0, |c| c.stall_seconds = 600).await;
    let numbers = phones(5800, 3);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    let due = chrono::Utc::now().timestamp() + 3;
    let owned = [("retry_at", aws_sdk_dynamodb::types::AttributeValue::N(due.to_string()))];
    t.set_recipient(&c, &numbers[1], &owned).await;
    start(&t, &c).await;
    let _workers = t.spawn_workers(2);
    let done = t.wait_for(&c, Duration::from_secs(20), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "failed_count")), (3, 0), "{done}");
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "each number exactly once: {h:?}");
    let second = t.fake.requests().iter().find(|r| r.to.as_deref() == Some(numbers[1].as_str())).unwrap().at_ms;
    assert!(second / 1000 >= (due - 1) as u64, "sent when its retry was due, not before");
}

#[tokio::test]
async fn throughput_errors_hold_the_account_back_two_seconds_not_two_seconds_each() {
    let t = TestStack::sending(4).await;
    let numbers = phones(4900, 60);
    for n in &numbers[..30] {
        t.fake.inject(Injection::error(130429).to(n.as_str()).times(1));
    }
    let (c, account) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    let begun = Instant::now();
    loop {
        let throttled = t.fake.requests().iter().filter(|r| r.error_code == Some(130429)).count();
        if throttled >= 30 {
            break;
        }
        let c = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
        assert!(begun.elapsed() < Duration::from_secs(40), "{throttled} of the 30 throttled sends happened: {c}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = t.app.db.next_slot(&account).await.unwrap().unwrap();
    let ahead_ms = (next - chrono::Utc::now().timestamp_micros()) / 1000;
    assert!(ahead_ms <= 3000, "30 throttled messages held the account back {ahead_ms} ms");
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    let failed = t.get(&format!("/api/campaigns/{c}/recipients?status=failed")).await.data()["items"].clone();
    assert_eq!(count(&done, "sent_count"), 60, "each throttled message is tried again: {done} {failed}");
    assert!(numbers.iter().all(|p| t.hits().get(p) == Some(&if numbers[..30].contains(p) { 2 } else { 1 })));
}

#[tokio::test]
async fn a_count_arriving_after_the_campaign_was_deleted_brings_nothing_back() {
    let t = TestStack::sending(2).await;
    // Slow answers: the outcomes are recorded after the campaign is paused and deleted.
    t.fake.set_config(FakeConfig { latency_ms: 1500, ..FakeConfig::default() });
    let numbers = phones(5300, 40);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    let begun = Instant::now();
    while t.fake.requests().is_empty() {
        assert!(begun.elapsed() < Duration::from_secs(10), "nothing was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.post(&format!("/api/campaigns/{c}/pause"), json!({})).await.assert_ok(200);
    t.delete(&format!("/api/campaigns/{c}")).await.assert_ok(200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.get(&format!("/api/campaigns/{c}")).await.assert_error(404, "not found");
    assert_eq!(t.count_items(format!("CAMPAIGN#{c}"), "").await, 0, "no item of the campaign came back");
    assert_eq!(t.count_recipient_items(&c).await, 0, "nor of its recipients");
}

#[tokio::test]
async fn a_lost_dispatch_is_found_by_the_reconciler_and_the_campaign_completes() {
    let t = TestStack::sending(0).await;
    let numbers = phones(5400, 30);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    // The campaign's dispatch is lost (and with it every send job).
    t.sqs.purge_queue().queue_url(&t.queues["DispatchQueue"]).send().await.unwrap();
    t.spawn_workers(2);
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(count(&done, "sent_count"), 30);
    assert!(numbers.iter().all(|p| t.hits().get(p) == Some(&1)));
}

#[tokio::test]
async fn counters_that_drifted_are_corrected_from_a_recount_and_the_campaign_completes() {
    let t = TestStack::sending(2).await;
    let numbers = phones(5500, 10);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    // Counters that lost a count (as a bug or a manual edit would leave them), on a campaign
    // that is sending again: it cannot complete until a recount finds the truth.
    t.set_campaign_status(&c, "sending").await;
    t.set(format!("CAMPAIGN#{c}"), "#COUNT#0", &[("sent_count", shared_n(-3)), ("processed_count", shared_n(-3))])
        .await;
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "processed_count")), (10, 10), "{done}");
}

fn shared_n(v: i64) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(v.to_string())
}

#[tokio::test]
async fn a_failed_message_comes_back_after_a_short_back_off_not_the_visibility_timeout() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_100K", &phones(5600, 3)).await;
    t.set_campaign_status(&c, "sending").await;
    let queue = t.queues["DispatchQueue"].clone();
    let step = DispatchJob::start(&Id::parse(&c).unwrap(), None);
    t.sqs.send_message().queue_url(&queue).message_body(serde_json::to_string(&step).unwrap()).send().await.unwrap();
    // Received as Lambda would (visibility 300 s) by a dispatcher that cannot queue its jobs.
    let received = t.sqs.receive_message().queue_url(&queue).visibility_timeout(300).send().await.unwrap();
    let m = &received.messages.unwrap()[0];
    let incoming = Incoming {
        id: m.message_id.clone().unwrap(),
        body: m.body.clone().unwrap(),
        receipt_handle: m.receipt_handle.clone().unwrap(),
        receive_count: 1,
        sent_at_ms: None,
    };
    let mut config = t.app.config.clone();
    config.send_queue_url = Some(format!("{}-missing", config.send_queue_url.unwrap()));
    let broken = shared::app::App::new(&shared::adapters::aws::sdk_config(), config);
    let failed =
        consume(&broken, Consumer::Dispatcher, vec![incoming.clone()], Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(failed, vec![incoming.id.clone()]);
    let begun = Instant::now();
    loop {
        let again = t.sqs.receive_message().queue_url(&queue).send().await.unwrap();
        if again.messages.is_some_and(|m| !m.is_empty()) {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "still invisible after 10 s (the visibility timeout is 300 s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
