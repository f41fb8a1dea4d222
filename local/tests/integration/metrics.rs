//! The metrics an operator watches: the EMF lines the sender, the dispatcher and the status
//! applier emit for a campaign sent through the fake WhatsApp API, collected from the stack.

use std::time::Duration;

use local::fake_whatsapp::Injection;
use serde_json::json;

use crate::stack::{TestStack, phones};

#[tokio::test]
async fn a_sent_campaign_is_counted_in_metrics_with_its_failures_under_their_error_class() {
    let t = TestStack::sending(2).await;
    let metrics = t.app.metrics.collect();
    t.post_statuses((50, 100, None), |_| {}).await;
    let mut numbers = phones(1200, 10);
    // Refused for good (131026), and once for a passing reason (131000) before it is sent.
    let undeliverable = "+14155559002".to_string();
    numbers.push(undeliverable.clone());
    t.fake.inject(Injection::error(131000).to(numbers[0].as_str()).times(1));
    let (c, account) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!((done["sent_count"].as_u64(), done["failed_count"].as_u64()), (Some(10), Some(1)));

    let by_account = [("AccountId", account.as_str())];
    let failed = |class: &str| metrics.sum("MessagesFailed", &[("AccountId", account.as_str()), ("ErrorClass", class)]);
    // A batch's lines are emitted when it ends: the one that completed the campaign may still run.
    t.eventually(Duration::from_secs(10), "the last batch's metrics", || async {
        metrics.sum("MessagesSent", &by_account) == 10.0 && metrics.sum("MessagesFailed", &by_account) == 2.0
    })
    .await;
    assert_eq!((failed("permanent"), failed("transient")), (1.0, 1.0));
    assert_eq!(metrics.sum("MessagesFailed", &[("AccountId", account.as_str()), ("ErrorClass", "unknown")]), 0.0);
    // One lag per POST: 10 sent, 2 refused.
    let lags = metrics.values("PaceLagMs");
    assert_eq!(lags.len(), 12, "{lags:?}");
    assert!(lags.iter().all(|l| (0.0..5_000.0).contains(l)), "{lags:?}");
    assert_eq!(metrics.sum("RecipientsQueued", &by_account), 11.0);
    let ages = |queue: &str| {
        let lines = metrics.lines();
        let of_queue = lines.iter().filter(|l| l["Queue"] == queue);
        of_queue.flat_map(|l| l["QueueAgeMs"].as_array().cloned().unwrap_or_default()).count()
    };
    assert!(ages("send") >= 1 && ages("dispatch") >= 1, "send {} dispatch {}", ages("send"), ages("dispatch"));

    // Every accepted message's sent and delivered statuses, applied by the status applier.
    t.eventually(Duration::from_secs(20), "statuses applied", || async { metrics.sum("StatusesApplied", &[]) >= 20.0 })
        .await;
    assert_eq!(metrics.sum("StatusesApplied", &[]), 20.0);
    assert!(ages("status") >= 1);
    // Every line is EMF: a namespace, dimension sets, and a value for each metric it declares.
    for line in metrics.lines() {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "WhatsAppCampaigns", "{line}");
        assert!(line["_aws"]["Timestamp"].is_i64() && directive["Dimensions"].is_array(), "{line}");
        for m in directive["Metrics"].as_array().unwrap() {
            assert!(line.get(m["Name"].as_str().unwrap()).is_some(), "{line}");
        }
    }
}
