//! The tier's 24-hour cap: a business portfolio reaches at most its tier's number of unique
//! people in any 24 hours, across its accounts and campaigns; a campaign waits for room and
//! sends on by itself.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::stack::{TestStack, phones};

#[tokio::test]
async fn a_campaign_past_the_24_hour_cap_waits_for_room_and_people_reached_already_count_once() {
    // Not timed: it runs beside the other tests rather than alone among the sending ones.
    let t = TestStack::new().await;
    t.spawn_workers(2);
    // TIER_50: 50 people a day for the business; both accounts belong to the same one.
    let first = phones(100, 30);
    let (a, _) = t.campaign_with("TIER_50", &first).await;
    t.post(&format!("/api/campaigns/{a}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&a, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(done["sent_count"], 30, "{done}");
    assert!(done.get("waiting_for_limit").is_none(), "{done}");

    // 40 more, 10 of whom the first campaign reached: 10 + 20 new fit, 10 wait.
    let second = phones(120, 40);
    let account = t.account("TIER_50").await;
    let b = t.another_campaign(&account, &second).await;
    t.post(&format!("/api/campaigns/{b}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&b, Duration::from_secs(40), |c| c["waiting_for_limit"] == true).await;
    // Its count catches up with what went out (a sender writes its tally after its sends, and a
    // job that counted its people under the cap before the wait may still be sending, later on
    // a busy machine), and then it stays there: nothing more goes out while it waits.
    let sent_by_b = || t.hits().values().sum::<usize>() as u64 - 30;
    let mut settled = false;
    for _ in 0..10 {
        let before = sent_by_b();
        t.wait_for(&b, Duration::from_secs(20), |c| c["sent_count"].as_u64() == Some(sent_by_b())).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        if sent_by_b() == before {
            settled = true;
            break;
        }
    }
    assert!(settled, "sends went on while the campaign waited for the cap");
    let waiting = t.get(&format!("/api/campaigns/{b}")).await.data().clone();
    let sent = waiting["sent_count"].as_u64().unwrap();
    // The 10 reached already go free, so more than the 20 left of the cap are sent; never more
    // than 30 (a count write retried on a busy machine may count someone twice, which only
    // errs on the side of the cap).
    assert!((21..=30).contains(&sent), "{waiting}");
    assert_eq!(waiting["status"], "sending", "{waiting}");
    let resumes_at = chrono::DateTime::parse_from_rfc3339(waiting["resumes_at"].as_str().unwrap()).unwrap();
    let ahead = resumes_at.timestamp() - chrono::Utc::now().timestamp();
    // Room opens 24 hours after the end of the hour the first people were counted in: up to 25
    // hours ahead, and at least 24 unless the test crossed the top of that hour meanwhile (then
    // less by however long ago that was: a few minutes at most).
    assert!(
        (24 * 3600 - 600..=25 * 3600).contains(&ahead) && resumes_at.timestamp() % 3600 == 0,
        "room opens when that hour's people stop counting: {waiting}"
    );
    assert_eq!(waiting["progress"]["counts"]["pending"].as_u64(), Some(40 - sent), "{waiting}");
    assert!(waiting["progress"]["eta_seconds"].as_u64().unwrap() >= 24 * 3600, "the eta counts the wait: {waiting}");
    let hits = t.hits();
    assert_eq!(hits.values().sum::<usize>() as u64, 30 + sent, "{hits:?}");
    let reached: HashSet<&String> = hits.keys().collect();
    assert!(reached.len() <= 50, "never past the cap of unique people: {}", reached.len());
    let listed = t.get("/api/campaigns?status=sending").await;
    assert_eq!(listed.data()["items"][0]["waiting_for_limit"], true, "{:?}", listed.data());

    // Paused meanwhile, it shows no wait; started again, it waits again (the window has not moved).
    t.post(&format!("/api/campaigns/{b}/pause"), json!({})).await.assert_ok(200);
    let paused = t.get(&format!("/api/campaigns/{b}")).await.data().clone();
    assert_eq!((paused["status"].as_str(), paused.get("resumes_at")), (Some("paused"), None), "{paused}");
    t.post(&format!("/api/campaigns/{b}/start"), json!({})).await.assert_ok(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resumed = t.get(&format!("/api/campaigns/{b}")).await.data().clone();
    assert_eq!(
        (&resumed["waiting_for_limit"], resumed["sent_count"].as_u64()),
        (&json!(true), Some(sent)),
        "{resumed}"
    );
    // The account's tier is raised: the next look at the cap finds room and it sends on.
    t.put(&format!("/api/accounts/{account}"), json!({"messaging_limit_tier": "TIER_1K"})).await.assert_ok(200);
    let done = t.wait_for(&b, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((done["sent_count"].as_u64(), done.get("waiting_for_limit")), (Some(40), None), "{done}");
    let hits = t.hits();
    assert_eq!((hits.len(), hits.values().sum::<usize>()), (60, 70), "each person once per campaign: {hits:?}");
    // The business's buckets hold each person at least once.
    let item = t.item("BUSINESS#102290129340398".into(), "LIMIT").await.expect("the cap's item");
    let counted: i64 =
        item.iter().filter(|(k, _)| k.starts_with('h')).map(|(_, v)| v.as_n().unwrap().parse::<i64>().unwrap()).sum();
    assert!(counted >= 60, "{counted}");
}

#[tokio::test]
async fn an_unlimited_tier_has_no_cap_and_reads_nothing_for_it() {
    // Not timed: it runs beside the other tests rather than alone among the sending ones.
    let t = TestStack::new().await;
    t.spawn_workers(2);
    let (c, _) = t.campaign_with("TIER_UNLIMITED", &phones(300, 60)).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(done["sent_count"], 60, "{done}");
    assert!(t.item("BUSINESS#102290129340398".into(), "LIMIT").await.is_none());
}
