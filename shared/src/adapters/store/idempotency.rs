//! Requests made under an `Idempotency-Key`: the first one's answer, kept for a day
//! ([`crate::http::idempotency`] decides what to do with it).

use super::keys::idempotency_pk;
use super::{Db, StoreError, StoreResult, n, s, text};

/// What a key holds when a request claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Nobody made this request yet (or the last try gave up): make it, then [`Db::keep_answer`].
    New,
    /// Made already: its answer.
    Done { status: u16, body: String },
    /// Being made right now by another request with the key.
    InProgress,
    /// The key was used for a different request (another body) on this route.
    OtherRequest,
}

impl Db {
    /// Claims `key` for the request `fingerprint` on `route` (method and path) until
    /// `lock_until` (unix seconds), for a day from `now`. A claim whose holder stopped without
    /// an answer (its lock ran out) is taken over; an expired one (DynamoDB's TTL deletes late)
    /// counts as absent.
    pub async fn claim_key(
        &self,
        key: &str,
        route: &str,
        fingerprint: &str,
        now: i64,
        lock_until: i64,
        expires_at: i64,
    ) -> StoreResult<Claimed> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(idempotency_pk(key)))
            .item("SK", s(route))
            .item("fingerprint", s(fingerprint))
            .item("state", s("in_progress"))
            .item("locked_until", n(lock_until))
            .item("expires_at", n(expires_at))
            .condition_expression(
                "attribute_not_exists(PK) OR expires_at < :now \
                 OR (#state = :progress AND locked_until < :now AND fingerprint = :fp)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":progress", s("in_progress"))
            .expression_attribute_values(":fp", s(fingerprint));
        match put.send().await.map_err(StoreError::from) {
            Ok(_) => return Ok(Claimed::New),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(idempotency_pk(key)))
            .key("SK", s(route))
            .consistent_read(true)
            .send()
            .await?
            .item
            .unwrap_or_default();
        if text(&item, "fingerprint").as_deref() != Some(fingerprint) {
            return Ok(Claimed::OtherRequest);
        }
        let status = item.get("status").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        Ok(match (status, text(&item, "body")) {
            (Some(status), Some(body)) => Claimed::Done { status, body },
            _ => Claimed::InProgress,
        })
    }

    /// Keeps the answer of the request that claimed `key`.
    pub async fn keep_answer(&self, key: &str, route: &str, status: u16, body: &str) -> StoreResult<()> {
        self.update(idempotency_pk(key), route)
            .update_expression("SET #state = :done, #status = :status, body = :body REMOVE locked_until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":status", n(status))
            .expression_attribute_values(":body", s(body))
            .send()
            .await?;
        Ok(())
    }

    /// Lets go of a claim whose request failed in a way worth trying again (a 5xx).
    pub async fn release_key(&self, key: &str, route: &str) -> StoreResult<()> {
        let del = self.client.delete_item().table_name(&self.table);
        del.key("PK", s(idempotency_pk(key))).key("SK", s(route)).send().await?;
        Ok(())
    }
}
