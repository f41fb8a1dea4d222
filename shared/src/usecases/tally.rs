//! The counters of the busiest changes, from the table's stream.
//!
//! A send's claim, its outcome and its delivery statuses are written one item at a time without
//! a transaction (one write unit each instead of two, 25 to a request), each with a new `tally`
//! mark. This consumer of the table's stream (a Lambda event source in AWS, a poller in the
//! local stack) takes every change whose new image carries a mark the old image did not, counts
//! it as the difference between what the recipient counted for before and after (the same
//! counting as a recount: [`Counters::of_recipient`]), and adds the sums to each
//! campaign's counters once per run of changes:
//!
//! - a run is one transaction: the counters of up to 99 campaigns and a mark of the run (its
//!   first change's event id, with its last change's sequence number); a run already added
//!   (the stream delivered it again after a failure) finds its mark and is added only past the
//!   sequence number it covered. So every change counts exactly once.
//! - a campaign whose processed count grew is completed when every recipient is processed.
//!
//! Other changes (imports, retry-failed, replies) keep counting in the transaction that writes
//! them and carry no new mark: the stream passes them by.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::store::{StoreError, Tallied, wait_before_retry};
use crate::app::App;
use crate::domain::campaign::{Counted as Holds, Counters, PricingCategory};
use crate::domain::recipient::RecipientStatus;
use crate::usecases::send::{SendError, complete_if_done};

/// Campaigns whose counters one run adds to (a transaction holds 100 items, the run's mark
/// among them).
const CAMPAIGNS_PER_RUN: usize = 99;

/// Attempts of a run whose transaction met another (a sender's claims count in the same
/// counter items).
const ATTEMPTS: u32 = 8;

/// The records of a stream batch, as Lambda delivers them and `GetRecords` answers them.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub dynamodb: StreamChange,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamChange {
    pub sequence_number: String,
    #[serde(default)]
    pub old_image: Option<Image>,
    #[serde(default)]
    pub new_image: Option<Image>,
}

/// A string attribute in DynamoDB's JSON (`{"S": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Text {
    #[serde(rename = "S")]
    pub s: String,
}

/// What this consumer reads of a recipient's image (the rest of the item is skipped
/// unread): its mark and what its campaign's counters count.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Image {
    pub tally: Option<Text>,
    pub campaign_id: Option<Text>,
    pub status: Option<Text>,
    pub wamid: Option<Text>,
    pub billed: Option<Text>,
    pub replied_at: Option<Text>,
    pub clicked_at: Option<Text>,
}

impl Image {
    /// What the recipient counts for; `None` when the image is not a recipient's.
    fn counts(&self) -> Option<Counters> {
        let status = RecipientStatus::parse(&self.status.as_ref()?.s)?;
        let billed = self
            .billed
            .as_ref()
            .and_then(|b| serde_json::from_value::<PricingCategory>(Value::from(b.s.as_str())).ok());
        Some(Counters::of_recipient(Holds {
            status,
            sent: self.wamid.is_some(),
            billed,
            replied: self.replied_at.is_some(),
            clicked: self.clicked_at.is_some(),
        }))
    }
}

/// What a batch did (logged, and returned to the tests).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub changes: usize,
    /// Changes that counted (a new mark).
    pub counted: usize,
    /// Changes added by an earlier delivery of the same records, not added again.
    pub added_before: usize,
    pub completed: usize,
}

/// The campaign a marked change belongs to and what it changes in its counters.
fn delta(change: &StreamChange) -> Option<(String, Counters)> {
    let new = change.new_image.as_ref()?;
    let old = change.old_image.as_ref();
    if new.tally.is_none() || old.and_then(|o| o.tally.as_ref()) == new.tally.as_ref() {
        return None;
    }
    let campaign = new.campaign_id.as_ref()?.s.clone();
    let before = old.and_then(Image::counts).unwrap_or_default();
    Some((campaign, new.counts()?.minus(before)))
}

/// Sequence numbers are decimal strings of growing value.
fn not_after(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

/// The Lambda handler of the table's stream.
pub async fn handle(app: Arc<App>, event: Value) -> Result<Counted, SendError> {
    let event: StreamEvent =
        serde_json::from_value(event).map_err(|e| SendError::Malformed(format!("not a stream batch: {e}")))?;
    count(&app, &event.records).await
}

/// Adds the marked changes among `records` (one stream shard's, in order) to their
/// campaigns' counters, exactly once however often the same records come.
pub async fn count(app: &App, records: &[StreamRecord]) -> Result<Counted, SendError> {
    let mut done = Counted { changes: records.len(), ..Default::default() };
    let mut rest = records;
    let mut attempt = 0;
    while !rest.is_empty() {
        let mut sums: BTreeMap<String, Counters> = BTreeMap::new();
        let mut end = 0;
        let mut counted = 0;
        for r in rest {
            if let Some((campaign, d)) = delta(&r.dynamodb) {
                if !sums.contains_key(&campaign) && sums.len() == CAMPAIGNS_PER_RUN {
                    break;
                }
                sums.entry(campaign).or_default().add(d);
                counted += 1;
            }
            end += 1;
        }
        let run = &rest[..end];
        sums.retain(|_, d| !d.is_zero());
        if sums.is_empty() {
            rest = &rest[end..];
            continue;
        }
        let last = &run[end - 1].dynamodb.sequence_number;
        let deltas: Vec<(String, Counters)> = sums.into_iter().collect();
        match app.db.add_tallies(&run[0].event_id, last, &deltas).await {
            Ok(Tallied::Added) => {
                done.counted += counted;
                for (campaign, d) in &deltas {
                    if d.processed > 0 {
                        done.completed += complete_if_done(app, campaign).await? as usize;
                    }
                }
                rest = &rest[end..];
            }
            Ok(Tallied::Before(covered)) => {
                // Added when these records came before: go on past what that covered.
                let skip = rest.iter().take_while(|r| not_after(&r.dynamodb.sequence_number, &covered)).count();
                let skip = if skip == 0 { end } else { skip };
                done.added_before += skip;
                rest = &rest[skip..];
            }
            Err(StoreError::Conflict) if attempt + 1 < ATTEMPTS => {
                attempt += 1;
                wait_before_retry(attempt).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if done.counted > 0 {
        tracing::debug!(?done, "changes counted");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn recipient(status: &str, mark: Option<&str>, wamid: Option<&str>) -> Value {
        let mut item = json!({
            "PK": {"S": "CAMPAIGN#c1#0"}, "SK": {"S": "R#+15550001"},
            "id": {"S": "8b0e4a64-8f9e-4d1c-9f55-2c1b0b6f1a01"},
            "campaign_id": {"S": "1d8b8f2e-5f0a-4e3b-9b7c-6a2d4c1e9f00"},
            "phone_number": {"S": "+15550001"}, "status": {"S": status},
            "created_at": {"S": "2026-12-04T00:00:00Z"}
        });
        if let Some(m) = mark {
            item["tally"] = json!({"S": m});
        }
        if let Some(w) = wamid {
            item["wamid"] = json!({"S": w});
        }
        item
    }

    fn change(old: Value, new: Value) -> StreamChange {
        serde_json::from_value(json!({"SequenceNumber": "100", "OldImage": old, "NewImage": new})).unwrap()
    }

    #[test]
    fn a_marked_change_counts_the_difference_of_before_and_after() {
        let sent = change(recipient("sending", None, None), recipient("sent", Some("a"), Some("w1")));
        let (campaign, d) = delta(&sent).unwrap();
        assert_eq!(campaign, "1d8b8f2e-5f0a-4e3b-9b7c-6a2d4c1e9f00");
        assert_eq!((d.sent, d.processed, d.sending, d.failed), (1, 1, -1, 0));
        let read = change(recipient("delivered", Some("a"), Some("w1")), recipient("read", Some("b"), Some("w1")));
        let (_, d) = delta(&read).unwrap();
        assert_eq!((d.sent, d.delivered, d.read, d.processed), (0, 0, 1, 0));
    }

    #[test]
    fn a_change_without_a_new_mark_is_not_counted() {
        let claim = change(recipient("pending", None, None), recipient("sending", None, None));
        assert!(delta(&claim).is_none());
        let same = change(recipient("sent", Some("a"), Some("w1")), recipient("sent", Some("a"), Some("w1")));
        assert!(delta(&same).is_none(), "a write that kept the old mark was counted in its own transaction");
    }

    #[test]
    fn the_sample_event_counts_one_message_sent() {
        let e: StreamEvent = serde_json::from_str(include_str!("../../../events/tally.json")).unwrap();
        let (campaign, d) = delta(&e.records[0].dynamodb).unwrap();
        assert_eq!(campaign, "3f1c2d4e-0000-4000-8000-000000000003");
        assert_eq!((d.sent, d.processed, d.sending), (1, 1, -1));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(not_after("99", "100"));
        assert!(not_after("100", "100"));
        assert!(!not_after("101", "100"));
    }
}
