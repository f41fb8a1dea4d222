//! The sending side end to end: actions, dispatcher, senders, pacing, errors and the
//! exactly-once guarantees, asserted on the fake WhatsApp API's log and on the table.

use std::time::{Duration, Instant};

use local::bench::busiest_second;
use local::fake_whatsapp::{FakeConfig, Injection};
use serde_json::Value;
use shared::domain::sending::{dispatch_window, job_size};
use shared::usecases::send::send_batch;

use crate::stack::{STALE_CLAIM_SECONDS, TestStack, job, phones};

fn count(c: &Value, k: &str) -> u64 {
    c[k].as_u64().unwrap_or(u64::MAX)
}

/// Puts a campaign into `sending` through the API, without workers to pick it up.
async fn start(t: &TestStack, campaign: &str) -> Value {
    t.post(&format!("/api/campaigns/{campaign}/start"), serde_json::json!({})).await.assert_ok(200).clone()
}

#[tokio::test]
async fn a_campaign_completes_with_exact_counters_and_every_recipient_sent_once() {
    let t = TestStack::sending(4).await;
    let numbers = phones(100, 40);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    let started = start(&t, &c).await;
    assert_eq!(started["status"], "sending");
    assert!(started["started_at"].is_string());
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(
        (count(&done, "sent_count"), count(&done, "failed_count"), count(&done, "total_recipients")),
        (40, 0, 40)
    );
    assert!(done["completed_at"].is_string());
    let recipients = t.recipients(&c).await;
    assert_eq!(recipients.len(), 40);
    assert!(recipients.iter().all(|r| r["status"] == "sent" && r["sent_at"].is_string()), "{recipients:?}");
    let h = t.hits();
    assert_eq!(h.len(), 40);
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "each number exactly once: {h:?}");
    // The body WhatsApp got carries the recipient's own values.
    let first = t.fake.requests().into_iter().find(|r| r.to.as_deref() == Some(numbers[0].as_str())).unwrap();
    let params = &first.body["template"]["components"][0]["parameters"];
    assert_eq!((params[0]["text"].as_str(), params[1]["text"].as_str()), (Some("Name 0"), Some("CODE0")));
    // Completed is final.
    t.post(&format!("/api/campaigns/{c}/pause"), serde_json::json!({})).await.assert_error(409, "is completed");
}

#[tokio::test]
async fn the_send_queue_holds_a_few_seconds_of_the_accounts_pace_not_the_whole_campaign() {
    let t = TestStack::sending(4).await;
    // TIER_1K: 10 msg/s, jobs of 5; the whole campaign would be 40 jobs.
    let numbers = phones(150, 200);
    let (c, _) = t.campaign_with("TIER_1K", &numbers).await;
    start(&t, &c).await;
    let mut most = 0;
    let mut sent_while_watching = 0;
    for _ in 0..40 {
        most = most.max(t.queued("SendQueue").await);
        sent_while_watching = t.fake.requests().len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent_while_watching >= 20, "the campaign was sending while watched: {sent_while_watching}");
    // A window is three seconds of pace plus what may be sent and not counted yet (50
    // recipients at 10 msg/s, 10 jobs of 5; 12 seen); a job put back for later takes the place
    // of the one it was, a few recipients put back make small jobs of their own.
    let window_jobs = (dispatch_window(10) / job_size(10) as u64) as usize;
    assert!(most <= window_jobs + 4, "at most {most} send jobs queued at once (a window is {window_jobs})");
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(count(&done, "sent_count"), 200);
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "every recipient once across the windows: {h:?}");
}

#[tokio::test]
async fn pause_stops_sending_within_a_batch_and_resume_sends_only_the_rest() {
    let t = TestStack::sending(4).await;
    let numbers = phones(200, 50);
    let (c, _) = t.campaign_with("TIER_1K", &numbers).await;
    start(&t, &c).await;
    t.wait_for(&c, Duration::from_secs(30), |c| count(c, "sent_count") >= 10).await;
    let paused = t.post(&format!("/api/campaigns/{c}/pause"), serde_json::json!({})).await;
    assert_eq!(paused.assert_ok(200)["status"], "paused");
    // Sends already reserved may land; then nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_pause = t.fake.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.fake.requests().len(), after_pause, "nothing is sent while paused");
    assert!(after_pause < 50, "the pause stopped the campaign before it finished");
    let c_paused = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!(count(&c_paused, "sent_count") as usize, after_pause, "counters agree with what was sent");
    let pending = t.get(&format!("/api/campaigns/{c}/recipients?status=pending")).await;
    assert_eq!(pending.data()["total"].as_u64(), Some((50 - after_pause) as u64));

    let resumed = start(&t, &c).await;
    assert_eq!(resumed["started_at"], c_paused["started_at"], "started_at is set on the first start only");
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(count(&done, "sent_count"), 50);
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "each number exactly once across pause and resume: {h:?}");
}

#[tokio::test]
async fn cancel_is_final_and_stops_sending() {
    let t = TestStack::sending(2).await;
    let (c, _) = t.campaign_with("TIER_50", &phones(300, 30)).await;
    start(&t, &c).await;
    t.wait_for(&c, Duration::from_secs(30), |c| count(c, "sent_count") >= 2).await;
    let cancelled = t.post(&format!("/api/campaigns/{c}/cancel"), serde_json::json!({})).await;
    assert_eq!(cancelled.assert_ok(200)["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = t.fake.requests().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(t.fake.requests().len(), sent);
    assert!(sent < 30);
    t.post(&format!("/api/campaigns/{c}/start"), serde_json::json!({})).await.assert_error(409, "is cancelled");
    t.post(&format!("/api/campaigns/{c}/cancel"), serde_json::json!({})).await.assert_error(409, "is cancelled");
}

#[tokio::test]
async fn actions_from_the_wrong_status_and_unusable_campaigns_are_refused() {
    let t = TestStack::sending(0).await;
    let (c, account) = t.campaign_with("TIER_1K", &phones(400, 2)).await;
    t.post(&format!("/api/campaigns/{c}/pause"), serde_json::json!({})).await.assert_error(409, "is draft");
    let empty = t.another_campaign(&account, &[]).await;
    t.post(&format!("/api/campaigns/{empty}/start"), serde_json::json!({})).await.assert_error(422, "no recipients");
    let campaign = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    t.delete(&format!("/api/templates/{}", campaign["template_id"].as_str().unwrap())).await.assert_ok(200);
    t.post(&format!("/api/campaigns/{c}/start"), serde_json::json!({})).await.assert_error(422, "template_id");
    assert_eq!(t.get(&format!("/api/campaigns/{c}")).await.data()["status"], "draft");
    t.post("/api/campaigns/0b6f4c6e-0000-4000-8000-000000000000/start", serde_json::json!({}))
        .await
        .assert_error(404, "not found");
}

#[tokio::test]
async fn the_same_job_delivered_twice_or_held_by_two_workers_reaches_whatsapp_once() {
    let t = TestStack::sending(0).await;
    let numbers = phones(500, 12);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = job(&c, &numbers[..6]);
    // Two workers hold the same message at once...
    let (a, b) = tokio::join!(
        send_batch(&t.app, vec![held.clone()], deadline),
        send_batch(&t.app, vec![held.clone()], deadline)
    );
    // ...and SQS delivers it once more afterwards, with a second job of the same recipients.
    let again = send_batch(&t.app, vec![held.clone(), job(&c, &numbers[..6])], deadline).await;
    let rest = send_batch(&t.app, vec![job(&c, &numbers[6..])], deadline).await;
    assert!(rest.is_empty() && again.is_empty(), "{again:?} {rest:?}");
    // A worker that found recipients claimed by the other may ask for a redelivery; it then
    // finds nothing to do.
    if !a.is_empty() || !b.is_empty() {
        assert!(send_batch(&t.app, vec![held], deadline).await.is_empty());
    }
    let h = t.hits();
    assert!(numbers.iter().all(|p| h.get(p) == Some(&1)), "{h:?}");
    let c = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!((count(&c, "sent_count"), count(&c, "failed_count"), c["status"].as_str()), (12, 0, Some("completed")));
}

#[tokio::test]
async fn a_crash_between_the_post_and_the_write_never_leads_to_a_second_post() {
    let t = TestStack::sending(0).await;
    let numbers = phones(600, 1);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    // WhatsApp answers slowly; the sender dies after its request left (the future is dropped).
    t.fake.set_config(FakeConfig { latency_ms: 1500, ..FakeConfig::default() });
    let held = job(&c, &numbers);
    let deadline = Instant::now() + Duration::from_secs(60);
    let request_left = async {
        while t.fake.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let crashed = tokio::select! {
        _ = send_batch(&t.app, vec![held.clone()], deadline) => false,
        _ = request_left => true,
    };
    assert!(crashed, "the sender was stopped mid-request");
    assert_eq!(t.fake.requests().len(), 1, "the request reached WhatsApp");
    t.fake.set_config(FakeConfig::default());
    // Redelivered while the claim is fresh: another sender may still be at work, so the job
    // leaves it alone (the claim's holder, or the reconciler once it is stale, settles it).
    assert!(send_batch(&t.app, vec![held.clone()], deadline).await.is_empty());
    assert_eq!(t.fake.requests().len(), 1, "no second POST");
    assert_eq!(t.recipients(&c).await[0]["status"], "sending");
    tokio::time::sleep(Duration::from_secs(STALE_CLAIM_SECONDS as u64 + 1)).await;
    // Redelivered after the claim went stale: recorded as unknown, never sent again.
    assert!(send_batch(&t.app, vec![held], deadline).await.is_empty());
    assert_eq!(t.fake.requests().len(), 1, "no second POST");
    let r = &t.recipients(&c).await[0];
    assert_eq!(r["status"], "failed");
    assert!(r["error_message"].as_str().unwrap().contains("outcome unknown"), "{r}");
    let c = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!((count(&c, "failed_count"), c["status"].as_str()), (1, Some("completed")));
}

#[tokio::test]
async fn transient_errors_are_retried_to_success_and_permanent_ones_recorded() {
    let t = TestStack::sending(2).await;
    let flaky = phones(700, 1);
    let undeliverable = "+14155559002".to_string();
    let mut numbers = phones(701, 3);
    numbers.extend(flaky.iter().cloned());
    numbers.push(undeliverable.clone());
    t.fake.inject(Injection::error(131000).to(flaky[0].as_str()).times(2));
    // A throughput error (130429) holds the account back, then the message goes out.
    let throttled = phones(704, 1);
    numbers.extend(throttled.iter().cloned());
    t.fake.inject(Injection::error(130429).to(throttled[0].as_str()).times(1));
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    start(&t, &c).await;
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((count(&done, "sent_count"), count(&done, "failed_count")), (5, 1));
    let h = t.hits();
    assert_eq!(h.get(&flaky[0]), Some(&3), "two failures, then success");
    assert_eq!(h.get(&throttled[0]), Some(&2), "throttled once, then sent");
    assert_eq!(h.get(&undeliverable), Some(&1), "a permanent error is not retried");
    let failed = t.get(&format!("/api/campaigns/{c}/recipients?status=failed")).await;
    let f = &failed.data()["items"][0];
    assert_eq!((f["phone_number"].as_str(), f["error_code"].as_i64()), (Some(undeliverable.as_str()), Some(131026)));
    assert!(f["error_message"].as_str().unwrap().contains("undeliverable"), "{f}");
}

#[tokio::test]
async fn a_template_error_pauses_the_campaign_and_a_token_error_pauses_the_account() {
    let t = TestStack::sending(2).await;
    // Template gone at Meta (132001): this campaign pauses with the reason.
    let (c, account) = t.campaign_with("TIER_100K", &["+14155559004".to_string()]).await;
    start(&t, &c).await;
    let paused = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "paused").await;
    assert!(paused["pause_reason"].as_str().unwrap().contains("132001"), "{paused}");
    let r = &t.recipients(&c).await[0];
    assert_eq!(r["status"], "pending", "not sent, so still pending for a resume");

    // Token expired (190): every sending campaign of the account pauses.
    // Large enough to be sending still when the other campaign meets the expired token (its
    // one job waits behind this one's on the shared pace: 1,500 at 80 a second is ~19 s).
    let other = t.another_campaign(&account, &phones(800, 1500)).await;
    let expired = t.another_campaign(&account, &["+14155559005".to_string()]).await;
    t.fake.set_config(FakeConfig { latency_ms: 200, ..FakeConfig::default() });
    start(&t, &other).await;
    start(&t, &expired).await;
    let a = t.wait_for(&other, Duration::from_secs(30), |c| c["status"] == "paused").await;
    let b = t.wait_for(&expired, Duration::from_secs(30), |c| c["status"] == "paused").await;
    assert!(a["pause_reason"].as_str().unwrap().contains("190") && b["pause_reason"].as_str().unwrap().contains("190"));
}

#[tokio::test]
async fn two_campaigns_on_one_tier_1k_account_keep_its_pace() {
    let t = TestStack::sending(4).await;
    let (first, account) = t.campaign_with("TIER_1K", &phones(1000, 60)).await;
    let second = t.another_campaign(&account, &phones(1100, 60)).await;
    start(&t, &first).await;
    start(&t, &second).await;
    for c in [&first, &second] {
        t.wait_for(c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    }
    let times: Vec<u64> = t.fake.requests().iter().map(|r| r.at_ms).collect();
    assert_eq!(times.len(), 120);
    let worst = busiest_second(&times);
    assert!(
        worst <= 11,
        "at most rate + 1 in any second, got {worst:?}: {:?}",
        times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    );
    // The two campaigns share the account's pace rather than take turns: each sends while the
    // other is still sending (taking turns, neither would). Who takes a freed slot is a race
    // between the two campaigns' jobs, and the first has a head start, so the share is not
    // asked to be even: on a loaded machine it has been from 10 to 40 of 60.
    let first_numbers = phones(1000, 60);
    let of_first: Vec<bool> =
        t.fake.requests().iter().map(|r| first_numbers.contains(r.to.as_ref().unwrap())).collect();
    let last_of_first = of_first.iter().rposition(|f| *f).unwrap();
    let first_of_second = of_first.iter().position(|f| !*f).unwrap();
    let second_meanwhile = of_first[..last_of_first].iter().filter(|f| !**f).count();
    let first_meanwhile = of_first[first_of_second..].iter().filter(|f| **f).count();
    assert!(
        second_meanwhile >= 5 && first_meanwhile >= 5,
        "the second sent {second_meanwhile} before the first's last, the first {first_meanwhile} after the second's first"
    );
}

#[tokio::test]
async fn a_job_whose_room_was_taken_after_its_look_waits_for_it_instead_of_letting_go() {
    let t = TestStack::sending(0).await;
    let numbers = phones(1200, 24);
    let (c, _) = t.campaign_with("TIER_1K", &numbers).await;
    start(&t, &c).await;
    // Two jobs of 12 at 10 msg/s: each needs 1.2 s of the pace, more than the 1 s horizon.
    // Both look at the idle pace before either reserves (a read, where each claim is a
    // transaction of 12); the second to reserve then finds the next free slot 1.2 s ahead,
    // about 0.2 s past its horizon. It waits for it and reserves again, holding its claims,
    // rather than letting them go and going back to the queue (which would leave its 12 unsent
    // here: no worker takes them).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (a, b) = tokio::join!(
        send_batch(&t.app, vec![job(&c, &numbers[..12])], deadline),
        send_batch(&t.app, vec![job(&c, &numbers[12..])], deadline)
    );
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    sent_once_each_at_tier_1k_pace(&t, &c, &numbers).await;
}

#[tokio::test]
async fn jobs_that_looked_together_take_the_room_in_turn_instead_of_going_round_the_queue() {
    let t = TestStack::sending(0).await;
    let numbers = phones(1300, 20);
    let (c, _) = t.campaign_with("TIER_1K", &numbers).await;
    start(&t, &c).await;
    // Five jobs of 4 at 10 msg/s (0.4 s of the pace each) look at the idle pace at once. The
    // first three fit within the 1 s horizon; the fourth and fifth find the next slot 0.2 s past
    // it and wait; when the fourth takes that room, the fifth finds the next 0.4 s later and
    // waits again, instead of letting go of its claims (its 4 would stay unsent here: no worker
    // takes the queue).
    let deadline = Instant::now() + Duration::from_secs(60);
    let results =
        futures_util::future::join_all(numbers.chunks(4).map(|four| send_batch(&t.app, vec![job(&c, four)], deadline)))
            .await;
    assert!(results.iter().all(|r| r.is_empty()), "{results:?}");
    sent_once_each_at_tier_1k_pace(&t, &c, &numbers).await;
}

/// Every one of `numbers` reached WhatsApp exactly once within the calls already made, never
/// more than TIER_1K's rate + 1 (11) in any second, and the campaign completed with them all
/// counted sent.
async fn sent_once_each_at_tier_1k_pace(t: &TestStack, campaign: &str, numbers: &[String]) {
    let h = t.hits();
    assert!(
        numbers.iter().all(|p| h.get(p) == Some(&1)),
        "each of the {} sent once within the calls: {h:?}",
        numbers.len()
    );
    let times: Vec<u64> = t.fake.requests().iter().map(|r| r.at_ms).collect();
    let worst = busiest_second(&times);
    assert!(worst <= 11, "at most rate + 1 in any second, got {worst}");
    let c = t.get(&format!("/api/campaigns/{campaign}")).await.data().clone();
    assert_eq!((count(&c, "sent_count"), c["status"].as_str()), (numbers.len() as u64, Some("completed")));
}

#[tokio::test]
async fn an_account_without_its_token_secret_pauses_and_resumes_once_the_token_is_set() {
    let t = TestStack::sending(1).await;
    let (c, account) = t.campaign_with("TIER_100K", &phones(900, 3)).await;
    t.app.tokens.delete(&account).await.unwrap();
    start(&t, &c).await;
    let paused = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "paused").await;
    assert!(paused["pause_reason"].as_str().unwrap().contains("no access token"), "{paused}");
    assert!(t.fake.requests().is_empty(), "nothing was sent without a token");

    // The token read from its secret is the one WhatsApp gets.
    t.put(&format!("/api/accounts/{account}"), serde_json::json!({"access_token": "EAAG-secret-token"}))
        .await
        .assert_ok(200);
    start(&t, &c).await;
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(count(&done, "sent_count"), 3);
    assert!(t.fake.requests().iter().all(|r| r.token.as_deref() == Some("EAAG-secret-token")));
}
