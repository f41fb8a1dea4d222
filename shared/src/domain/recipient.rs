//! Recipients of a campaign and how they are shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timestamp;
use super::campaign::PricingCategory;
use super::id::Id;
use super::phone::Phone;

/// The column that holds the number; also accepted as `phone`, `mobile` or `number` in CSV.
pub const PHONE_FIELD: &str = "phone_number";
pub const PHONE_ALIASES: [&str; 4] = ["phone_number", "phone", "mobile", "number"];

/// Names a recipient field may not take, because the recipient's own attributes use them.
pub const RESERVED_FIELDS: [&str; 18] = [
    "id",
    "campaign_id",
    "status",
    "fields",
    "wamid",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "error_code",
    "error_message",
    "claimed_at",
    "updated_at",
    "retry_after",
    "replied_at",
    "clicked_at",
    "clicked_button",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    /// Imported, not sent yet.
    Pending,
    /// Claimed by a sender; the outcome of the send is not recorded yet.
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl RecipientStatus {
    pub const ALL: [RecipientStatus; 6] = [
        RecipientStatus::Pending,
        RecipientStatus::Sending,
        RecipientStatus::Sent,
        RecipientStatus::Delivered,
        RecipientStatus::Read,
        RecipientStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Sending => "sending",
            RecipientStatus::Sent => "sent",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Read => "read",
            RecipientStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: Id,
    pub campaign_id: Id,
    pub phone_number: Phone,
    pub status: RecipientStatus,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The send job holding the claim while the status is `sending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_id: Option<String>,
    /// When the claim was taken (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<i64>,
    /// While a delayed retry job owns the recipient (it was put back after a transient error
    /// or a pair rate limit): when that job is due (unix seconds). Other jobs leave it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// How many times delivery statuses changed this recipient: the condition that keeps two
    /// webhooks from counting the same change twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_version: Option<u64>,
    /// Which of its campaign's recipient shards holds it ([`shard_of`]); none for recipients of
    /// campaigns created before recipients were sharded (all in the campaign's partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// The pricing category Meta billed its message in (from the message's statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed: Option<PricingCategory>,
    /// When the person first answered the message (within 72 hours of its delivery), and when
    /// they first pressed one of its quick-reply buttons, with the button's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_button: Option<String>,
}

/// How many shards a new campaign spreads its recipients over (`docs/dynamodb.md` has the
/// arithmetic: a 1,000 msg/s send with its webhooks stays near 300 write units a second per key).
pub const RECIPIENT_SHARDS: u32 = 32;

/// The shard of `phone` in a campaign of `shards` recipient shards (FNV-1a of the number, so
/// every process finds the same one); none for a campaign without shards (`shards` 0).
pub fn shard_of(shards: u32, phone: &str) -> Option<u32> {
    if shards == 0 {
        return None;
    }
    let hash = phone.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    Some((hash % shards as u64) as u32)
}

impl Recipient {
    /// A newly imported recipient, not sent yet.
    pub fn pending(
        campaign_id: &Id,
        shards: u32,
        phone_number: Phone,
        fields: BTreeMap<String, String>,
        now: &Timestamp,
    ) -> Self {
        Recipient {
            shard: shard_of(shards, &phone_number),
            id: Id::generate(),
            campaign_id: campaign_id.clone(),
            phone_number,
            status: RecipientStatus::Pending,
            fields,
            created_at: now.clone(),
            wamid: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            error_code: None,
            error_message: None,
            claim_id: None,
            claimed_at: None,
            retry_at: None,
            delivery_version: None,
            billed: None,
            replied_at: None,
            clicked_at: None,
            clicked_button: None,
        }
    }

    /// The API's view: the spec's attributes with the imported fields beside them (`name`,
    /// `discount_code`…), and the optional ones only when set.
    /// When a recipient that failed with Meta's per-user marketing limit may be sent again
    /// ([`crate::domain::sending::MARKETING_LIMIT_WAIT_HOURS`] after the failure); none for
    /// any other recipient.
    pub fn retry_after(&self) -> Option<Timestamp> {
        use crate::domain::sending::{MARKETING_LIMIT_CODE, MARKETING_LIMIT_WAIT_HOURS};
        if self.status != RecipientStatus::Failed || self.error_code != Some(MARKETING_LIMIT_CODE) {
            return None;
        }
        let failed = chrono::DateTime::parse_from_rfc3339(self.failed_at.as_deref()?).ok()?;
        Some(crate::domain::format_time(
            failed.with_timezone(&chrono::Utc) + chrono::Duration::hours(MARKETING_LIMIT_WAIT_HOURS),
        ))
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert(PHONE_FIELD.into(), self.phone_number.clone().into());
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone().into());
        }
        m.insert("status".into(), self.status.as_str().into());
        let optional = [
            ("sent_at", self.sent_at.as_deref()),
            ("delivered_at", self.delivered_at.as_deref()),
            ("read_at", self.read_at.as_deref()),
            ("failed_at", self.failed_at.as_deref()),
            ("error_message", self.error_message.as_deref()),
            ("replied_at", self.replied_at.as_deref()),
            ("clicked_at", self.clicked_at.as_deref()),
            ("clicked_button", self.clicked_button.as_deref()),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        if let Some(code) = self.error_code {
            m.insert("error_code".into(), code.into());
        }
        if let Some(at) = self.retry_after() {
            m.insert("retry_after".into(), at.into());
        }
        m.insert("created_at".into(), self.created_at.clone().into());
        Value::Object(m)
    }
}

/// Where a recipient is: its campaign, its number and its shard (its item's key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecipientKey {
    pub campaign_id: Id,
    pub phone: Phone,
    pub shard: Option<u32>,
}

impl RecipientKey {
    /// The key of `phone` in a campaign of `shards` recipient shards.
    pub fn new(campaign_id: &Id, shards: u32, phone: &Phone) -> Self {
        RecipientKey { campaign_id: campaign_id.clone(), phone: phone.clone(), shard: shard_of(shards, phone) }
    }

    pub fn of(r: &Recipient) -> Self {
        RecipientKey { campaign_id: r.campaign_id.clone(), phone: r.phone_number.clone(), shard: r.shard }
    }

    /// The key as the sender puts it in `biz_opaque_callback_data` (Meta echoes it in every
    /// status): `<campaign>/<E.164>`, and `/<shard>` for a sharded campaign.
    pub fn callback(&self) -> String {
        match self.shard {
            Some(shard) => format!("{}/{}/{shard}", self.campaign_id, self.phone),
            None => format!("{}/{}", self.campaign_id, self.phone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_view_flattens_fields_and_omits_unset_times() {
        let r = Recipient {
            id: "r1".into(),
            campaign_id: "c1".into(),
            phone_number: "+14155550123".into(),
            status: RecipientStatus::Failed,
            fields: [("name".to_string(), "John".to_string())].into(),
            created_at: "t0".into(),
            wamid: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: Some("t1".into()),
            error_code: Some(131026),
            error_message: Some("Message undeliverable".into()),
            claim_id: Some("job".into()),
            claimed_at: Some(1),
            retry_at: Some(1),
            delivery_version: Some(2),
            shard: Some(3),
            billed: None,
            replied_at: None,
            clicked_at: None,
            clicked_button: None,
        };
        let v = r.to_json();
        assert_eq!(v["name"], "John");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error_code"], 131026);
        assert_eq!(v["failed_at"], "t1");
        assert!(v.get("sent_at").is_none() && v.get("campaign_id").is_none() && v.get("claim_id").is_none());
        assert!(v.get("retry_after").is_none(), "only the marketing limit waits");
        // Meta's per-user marketing limit: the number may be tried again a day later.
        let limited =
            Recipient { error_code: Some(131049), failed_at: Some("2026-01-01T10:00:00Z".into()), ..r.clone() };
        assert_eq!(limited.to_json()["retry_after"], "2026-01-02T10:00:00Z");
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for s in RecipientStatus::ALL {
            assert_eq!(RecipientStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RecipientStatus::parse("done"), None);
    }

    #[test]
    fn numbers_spread_over_every_shard_and_always_land_in_the_same_one() {
        assert_eq!(shard_of(0, "+14155550123"), None);
        assert_eq!(shard_of(16, "+14155550123"), shard_of(16, "+14155550123"));
        let mut per_shard = [0u32; RECIPIENT_SHARDS as usize];
        for i in 0..32_000 {
            let shard = shard_of(RECIPIENT_SHARDS, &format!("+1415555{i:04}")).unwrap();
            per_shard[shard as usize] += 1;
        }
        // Consecutive numbers (the usual import) spread evenly: each shard within 20% of 1,000.
        assert!(per_shard.iter().all(|n| (800..=1200).contains(n)), "{per_shard:?}");
    }
}
