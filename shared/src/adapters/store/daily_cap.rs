//! The tier's 24-hour cap in the store (and a campaign's waits, for it or a send window) (`docs/dynamodb.md`): per business portfolio one
//! `BUSINESS#<id>`/`LIMIT` item holding the people reached per hour (`h<hour>` attributes), and
//! per person reached one `CONTACT#<business>#<number>`/`CONTACT` item holding the hour they
//! were last counted in; both expire with DynamoDB's TTL once no longer counted.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use super::keys::*;
use super::{Db, Item, StoreError, StoreResult, applied, n, s};
use crate::domain::daily_cap::{Admitted, COUNTED_HOURS, Reached, admit, hour_of};
use crate::domain::phone::Phone;

/// The unix time an item counted in `hour` may go.
fn expiry(hour: i64) -> i64 {
    (hour + COUNTED_HOURS + 1) * 3600
}

/// The buckets of a `LIMIT` item.
pub(crate) fn reached_of(item: &Item) -> Reached {
    let hours = item
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix('h')?.parse().ok()?, v.as_n().ok()?.parse::<i64>().ok()?)))
        .map(|(h, count): (i64, i64)| (h, count.max(0) as u64))
        .collect();
    Reached { hours }
}

/// The hour a `CONTACT` item was counted in, and its number.
pub(crate) fn contact_of(item: &Item) -> Option<(Phone, i64)> {
    let pk = item.get("PK")?.as_s().ok()?;
    let phone = pk.strip_prefix("CONTACT#")?.split_once('#')?.1;
    let hour = item.get("hour")?.as_n().ok()?.parse().ok()?;
    Some((Phone::stored(phone.to_string()), hour))
}

/// The keys of the cap's items for a job of `phones`: the `LIMIT` item and their contacts.
pub(crate) fn cap_keys(business: &str, phones: &[Phone]) -> Vec<Item> {
    let key = |pk: String, sk: &str| HashMap::from([("PK".to_string(), s(pk)), ("SK".to_string(), s(sk))]);
    let mut keys = vec![key(business_pk(business), LIMIT_SK)];
    keys.extend(phones.iter().map(|p| key(contact_pk(business, p), CONTACT_SK)));
    keys
}

impl Db {
    /// A business portfolio's people reached, per hour.
    pub async fn reached(&self, business: &str) -> StoreResult<Reached> {
        Ok(self.get_raw(business_pk(business), LIMIT_SK).await?.map(|i| reached_of(&i)).unwrap_or_default())
    }

    /// Admits what the cap lets through of `phones` now and counts it, atomically: the current
    /// hour's bucket grows on condition that the total stays within `cap` (the other buckets
    /// as `seen`; they only shrink meanwhile), people reached earlier move to it, and buckets
    /// no longer counted go. When another sender counted meanwhile, reads again and retries.
    /// One write, none when nobody new is reached.
    pub async fn admit_under_cap(
        &self,
        business: &str,
        phones: &[Phone],
        counted_in: &HashMap<Phone, i64>,
        mut seen: Reached,
        cap: u64,
        now_unix: i64,
    ) -> StoreResult<(Admitted, Reached)> {
        let hour = hour_of(now_unix);
        for _ in 0..8 {
            let admitted = admit(phones, counted_in, seen.room(cap, hour), hour);
            if !admitted.writes() {
                return Ok((admitted, seen));
            }
            let current = seen.hours.get(&hour).copied().unwrap_or(0);
            let others = seen.used(hour) - current;
            let max_current = cap.saturating_sub(admitted.new + others);
            let adding = admitted.new + admitted.moved.values().sum::<u64>();
            let mut sets = vec!["#c = if_not_exists(#c, :zero) + :add".to_string(), "expires_at = :exp".to_string()];
            let mut req = self
                .update(business_pk(business), LIMIT_SK)
                .expression_attribute_names("#c", format!("h{hour}"))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":add", n(adding))
                .expression_attribute_values(":max", n(max_current))
                .expression_attribute_values(":exp", n(expiry(hour)));
            for (i, (h, count)) in admitted.moved.iter().enumerate() {
                sets.push(format!("#m{i} = if_not_exists(#m{i}, :m{i}) - :m{i}"));
                req = req
                    .expression_attribute_names(format!("#m{i}"), format!("h{h}"))
                    .expression_attribute_values(format!(":m{i}"), n(count));
            }
            let stale = seen.stale(hour);
            let mut expr = format!("SET {}", sets.join(", "));
            if !stale.is_empty() {
                let names: Vec<String> = (0..stale.len()).map(|i| format!("#s{i}")).collect();
                expr.push_str(&format!(" REMOVE {}", names.join(", ")));
                for (i, h) in stale.iter().enumerate() {
                    req = req.expression_attribute_names(format!("#s{i}"), format!("h{h}"));
                }
            }
            let written = req
                .update_expression(expr)
                .condition_expression("attribute_not_exists(#c) OR #c <= :max")
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            match written {
                Ok(out) => return Ok((admitted, out.attributes.map(|i| reached_of(&i)).unwrap_or_default())),
                Err(e) => match StoreError::from(e) {
                    StoreError::ConditionFailed => seen = self.reached(business).await?,
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Conflict)
    }

    /// Notes the hour these people were counted in (batches of 25 puts).
    pub async fn note_contacts<'a>(
        &self,
        business: &str,
        phones: impl Iterator<Item = &'a Phone>,
        now_unix: i64,
    ) -> StoreResult<()> {
        let hour = hour_of(now_unix);
        let requests = phones
            .map(|p| {
                let item = HashMap::from([
                    ("PK".to_string(), s(contact_pk(business, p))),
                    ("SK".to_string(), s(CONTACT_SK)),
                    ("hour".to_string(), n(hour)),
                    ("expires_at".to_string(), n(expiry(hour))),
                ]);
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| StoreError::Dynamo(e.to_string()))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_write(requests).await.map(|_| ()).map_err(|(_, e)| e)
    }

    /// Marks a sending campaign as waiting for the cap until `until` (unix seconds), unless it
    /// waits as long already. Returns whether this call set it.
    pub async fn wait_for_limit(&self, campaign_id: &str, until: i64) -> StoreResult<bool> {
        let written = self
            .update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("SET limit_until = :until")
            .condition_expression("#status = :sending AND (attribute_not_exists(limit_until) OR limit_until < :until)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        applied(written)
    }

    /// Ends a campaign's wait for the cap (it was `until`).
    pub async fn end_limit_wait(&self, campaign_id: &str, until: i64) -> StoreResult<()> {
        let written = self
            .update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("REMOVE limit_until")
            .condition_expression("limit_until = :until")
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        applied(written).map(|_| ())
    }

    /// Notes that the campaign's recipients left wait for their send window until `at` (unix
    /// seconds), so that the reconciler leaves it alone meanwhile.
    pub async fn note_window_wait(&self, campaign_id: &str, at: i64) -> StoreResult<()> {
        let written = self
            .update(campaign_pk(campaign_id), CAMPAIGN_SK)
            .update_expression("SET window_wait_until = :at")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        applied(written).map(|_| ())
    }
}
