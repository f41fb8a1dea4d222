//! The counters of sends and statuses come from the table's stream: a batch of changes that
//! the stream delivers again (after a failure, with more records behind it) counts each change
//! once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::usecases::tally::{self, Image, StreamChange, StreamRecord, Text};

use crate::stack::{TestStack, phones, recipient_pk, s};

/// The change of each recipient from how it is stored to `sent` with a new mark, as the stream
/// shows it (event ids and sequence numbers in order).
async fn sent_changes(t: &TestStack, campaign: &str, numbers: &[String]) -> Vec<StreamRecord> {
    let mut records = Vec::new();
    for (i, phone) in numbers.iter().enumerate() {
        let old = t.item(recipient_pk(campaign, phone), &format!("R#{phone}")).await.expect("the recipient");
        let mut new = old.clone();
        new.insert("status".into(), s("sent"));
        new.insert("wamid".into(), s(&format!("wamid.{i}")));
        new.insert("tally".into(), s(&format!("mark{i}")));
        let image = |item: HashMap<String, AttributeValue>| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(|s| Text { s: s.clone() });
            Image {
                tally: text("tally"),
                campaign_id: text("campaign_id"),
                status: text("status"),
                wamid: text("wamid"),
                ..Default::default()
            }
        };
        records.push(StreamRecord {
            event_id: format!("event-{campaign}-{i}"),
            dynamodb: StreamChange {
                sequence_number: format!("{}", 1_000_000_000_000u64 + i as u64 * 7),
                old_image: Some(image(old)),
                new_image: Some(image(new)),
            },
        });
    }
    records
}

#[tokio::test]
async fn changes_the_stream_delivers_again_count_once_and_the_new_ones_behind_them_count() {
    let t = TestStack::new().await;
    let numbers = phones(9100, 3);
    let (campaign, _) = t.campaign_with("TIER_1K", &numbers).await;
    let records = sent_changes(&t, &campaign, &numbers).await;
    let sent = |c: &serde_json::Value| (c["sent_count"].as_u64(), c["processed_count"].as_u64());

    let first = tally::count(&t.app, &records[..2]).await.unwrap();
    assert_eq!((first.counted, first.added_before), (2, 0));
    let c = t.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(sent(c.data()), (Some(2), Some(2)), "{}", c.body);

    // Delivered again from the same record, with one more behind it: only that one counts.
    let again = tally::count(&t.app, &records).await.unwrap();
    assert_eq!((again.counted, again.added_before), (1, 2));
    let c = t.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(sent(c.data()), (Some(3), Some(3)), "{}", c.body);

    // And once more, whole: nothing new.
    let third = tally::count(&t.app, &records).await.unwrap();
    assert_eq!((third.counted, third.added_before), (0, 3));
    let from_the_second = tally::count(&t.app, &records[2..]).await.unwrap();
    assert_eq!((from_the_second.counted, from_the_second.added_before), (0, 1));
    let c = t.get(&format!("/api/campaigns/{campaign}")).await;
    assert_eq!(sent(c.data()), (Some(3), Some(3)), "{}", c.body);
}
