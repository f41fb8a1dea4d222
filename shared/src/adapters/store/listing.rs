//! Listings that reach any depth: a listing is a sequence of key-condition queries (a sharded
//! campaign's recipients are one query per shard, read one after another), and a position in
//! it is the query and the last key read there. A page is read from a position (a cursor the
//! previous page answered) or, for page numbers, from the position the earlier pages end at,
//! found by counting queries (nothing of the skipped items crosses the network).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::Select;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Db, Item, KeyQuery, StoreResult, s};

/// Where a listing goes on: the query (by position in the listing) and the key after which
/// it continues (none: from its start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Which listing it belongs to ([`fingerprint`]).
    #[serde(rename = "l", default)]
    listing: u64,
    #[serde(rename = "q", default)]
    part: usize,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    after: Option<BTreeMap<String, String>>,
}

impl Position {
    /// The position as an opaque cursor (URL-safe).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// A cursor [`Position::encode`] made, or `None` when `cursor` is not one.
    pub fn decode(cursor: &str) -> Option<Position> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()
    }

    /// Whether the position can be in the listing `queries`: its query is one of them and its
    /// key is a key of that query (its partition, the table's and the index's key attributes).
    fn fits(&self, queries: &[KeyQuery]) -> bool {
        if self.listing != fingerprint(queries) {
            return false;
        }
        let Some(q) = queries.get(self.part) else { return self.part == queries.len() && self.after.is_none() };
        let Some(after) = &self.after else { return true };
        let mut wanted = vec!["PK", "SK"];
        if let Some(index) = q.index {
            let (pk, sk) = index.key_attributes();
            wanted.extend([pk, sk]);
        }
        after.len() == wanted.len()
            && wanted.iter().all(|a| after.contains_key(*a))
            && after.get(q.pk.0) == Some(&q.pk.1)
    }

    fn start_key(&self) -> Option<Item> {
        self.after.as_ref().map(|k| k.iter().map(|(a, v)| (a.clone(), s(v))).collect())
    }

    /// Moves to `last` (a query's `LastEvaluatedKey`), or to the next query when there is none.
    fn advance(&mut self, last: Option<Item>) {
        match last {
            Some(k) => {
                self.after = Some(k.into_iter().filter_map(|(a, v)| Some((a, v.as_s().ok()?.clone()))).collect());
            }
            None => *self = Position { part: self.part + 1, after: None, ..*self },
        }
    }
}

/// What tells listings apart: their first query's partition, index and status filter (FNV-1a).
fn fingerprint(queries: &[KeyQuery]) -> u64 {
    let Some(q) = queries.first() else { return 0 };
    let parts = [q.pk.1.as_str(), q.index.map_or("table", |i| i.name()), q.status.unwrap_or("")];
    parts
        .iter()
        .flat_map(|p| p.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Page number `n` (from 1) of pages of the listing's limit.
    Page(u32),
    /// Where the previous page ended.
    At(Position),
}

/// A page of a listing, the number of items in the whole listing, and where the next page
/// starts (none after the last).
#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub next: Option<Position>,
}

impl Db {
    /// Up to `limit` items (keys only, on a keys-only index) of the listing `queries` from
    /// `start`, and the position after them (none when the listing has no more).
    pub(crate) async fn list_across(
        &self,
        queries: &[KeyQuery],
        start: Start,
        limit: u32,
    ) -> StoreResult<(Vec<Item>, Option<Position>)> {
        let mut at = match start {
            Start::At(p) if p.fits(queries) => p,
            Start::At(_) => return Err(super::StoreError::BadCursor),
            Start::Page(n) => self.skip_across(queries, (n.max(1) as u64 - 1) * limit as u64).await?,
        };
        at.listing = fingerprint(queries);
        let mut items = Vec::with_capacity(limit as usize);
        while at.part < queries.len() && items.len() < limit as usize {
            // With a filter, `Limit` bounds the items read, so no more than `want` match.
            let want = (limit as usize - items.len()) as i32;
            let out = self.query(&queries[at.part]).limit(want).set_exclusive_start_key(at.start_key()).send().await?;
            items.extend(out.items.unwrap_or_default());
            at.advance(out.last_evaluated_key);
        }
        Ok((items, (at.part < queries.len()).then_some(at)))
    }

    /// The position after the first `skip` items of the listing (counted on the server).
    async fn skip_across(&self, queries: &[KeyQuery], mut skip: u64) -> StoreResult<Position> {
        let mut at = Position::default();
        while skip > 0 && at.part < queries.len() {
            let step = skip.min(i32::MAX as u64) as i32;
            let out = self
                .query(&queries[at.part])
                .select(Select::Count)
                .limit(step)
                .set_exclusive_start_key(at.start_key())
                .send()
                .await?;
            skip -= (out.count as u64).min(skip);
            at.advance(out.last_evaluated_key);
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_through_its_cursor_and_nothing_else_decodes() {
        let q = KeyQuery::table("CAMPAIGN#c#3".into(), "R#");
        let mut p = Position { listing: fingerprint(std::slice::from_ref(&q)), ..Default::default() };
        p.advance(Some([("PK".to_string(), s("CAMPAIGN#c#3")), ("SK".to_string(), s("R#+1415"))].into()));
        let cursor = p.encode();
        assert!(cursor.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Position::decode(&cursor), Some(p.clone()));
        p.advance(None);
        assert_eq!((p.part, p.after.is_none()), (1, true));
        assert_eq!(Position::decode("not a cursor"), None);
        assert_eq!(Position::decode(&URL_SAFE_NO_PAD.encode(r#"{"q":"x"}"#)), None);
        let other = KeyQuery::table("CAMPAIGN#d#3".into(), "R#");
        let mut at = Position { listing: fingerprint(std::slice::from_ref(&q)), ..Default::default() };
        at.advance(Some([("PK".to_string(), s("CAMPAIGN#c#3")), ("SK".to_string(), s("R#+1415"))].into()));
        assert!(at.fits(std::slice::from_ref(&q)));
        assert!(!at.fits(std::slice::from_ref(&other)), "another campaign's cursor");
        let index = KeyQuery::index(super::super::Index::Gsi2, "CAMPAIGN#c#pending#3".into());
        assert!(!at.fits(&[index]), "a table key where an index key belongs");
        assert!(!Position { part: 5, ..at.clone() }.fits(std::slice::from_ref(&q)));
        let at_start = Position { after: None, ..at };
        assert!(at_start.fits(std::slice::from_ref(&q)) && !at_start.fits(&[other]), "a position without a key too");
    }
}
