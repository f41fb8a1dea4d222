//! The tier's 24-hour cap: how many unique people a business portfolio may start conversations
//! with in any rolling 24 hours (Meta's messaging limit, per `business_account_id`).
//!
//! People reached are counted in hourly buckets (one small item per business; the store keeps
//! it in `docs/dynamodb.md`'s `BUSINESS#…`/`LIMIT` item). A bucket stays counted for
//! [`COUNTED_HOURS`] whole hours, so a person counts between 24 and 25 hours after the message,
//! never less than Meta's 24: the cap is never exceeded for a rounding. A person already
//! counted in a live bucket is not counted again when messaged again: they move to the current
//! bucket (their 24 hours start over, as Meta's do), which leaves the total unchanged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::account::Tier;
use super::phone::Phone;

/// How many hourly buckets are counted: the current hour and the 24 before it.
pub const COUNTED_HOURS: i64 = 25;

const HOUR: i64 = 3600;

/// The hour (since the epoch) a unix time falls in.
pub fn hour_of(unix: i64) -> i64 {
    unix.div_euclid(HOUR)
}

impl Tier {
    /// Unique people the tier lets a business portfolio reach in a rolling 24 hours (`None`:
    /// no cap).
    pub fn daily_cap(self) -> Option<u64> {
        match self {
            Tier::Tier50 => Some(50),
            Tier::Tier250 => Some(250),
            Tier::Tier1K => Some(1_000),
            Tier::Tier2K => Some(2_000),
            Tier::Tier10K => Some(10_000),
            Tier::Tier100K => Some(100_000),
            Tier::Unlimited => None,
        }
    }
}

/// A business's people reached, per hour (since the epoch) they were counted in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    pub hours: BTreeMap<i64, u64>,
}

impl Reached {
    /// Whether the bucket of `hour` still counts at `now_hour`.
    pub fn live(hour: i64, now_hour: i64) -> bool {
        hour > now_hour - COUNTED_HOURS
    }

    /// People counted at `now_hour`.
    pub fn used(&self, now_hour: i64) -> u64 {
        self.hours.iter().filter(|(h, _)| Self::live(**h, now_hour)).map(|(_, n)| n).sum()
    }

    /// New people the cap still lets through at `now_hour`.
    pub fn room(&self, cap: u64, now_hour: i64) -> u64 {
        cap.saturating_sub(self.used(now_hour))
    }

    /// Buckets no longer counted (the store removes them with its next write).
    pub fn stale(&self, now_hour: i64) -> Vec<i64> {
        self.hours.keys().copied().filter(|h| !Self::live(*h, now_hour)).collect()
    }

    /// When room opens again (unix seconds): when the oldest counted bucket stops counting.
    pub fn frees_at(&self, now_hour: i64) -> i64 {
        let oldest = self.hours.iter().find(|(h, n)| Self::live(**h, now_hour) && **n > 0).map(|(h, _)| *h);
        (oldest.unwrap_or(now_hour) + COUNTED_HOURS) * HOUR
    }
}

/// Which of a job's people go now under the cap, and what that does to the buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Everyone who goes now: people counted already (in a live bucket) and the new ones the
    /// room lets through, in the job's order.
    pub go: Vec<Phone>,
    /// New people beyond the room: they wait until it opens.
    pub over: Vec<Phone>,
    /// New people admitted (counted in the current bucket).
    pub new: u64,
    /// People counted already in an earlier live bucket, moved to the current one: how many
    /// leave each bucket.
    pub moved: BTreeMap<i64, u64>,
}

impl Admitted {
    /// Whether the buckets change at all.
    pub fn writes(&self) -> bool {
        self.new > 0 || !self.moved.is_empty()
    }

    /// Everyone whose count is now in the current hour: the contacts to note.
    pub fn counted(&self) -> impl Iterator<Item = &Phone> {
        self.go.iter()
    }
}

/// Splits a job's numbers: `counted_in` gives the hour each number was last counted in (if it
/// was). People in a live bucket always go; new people go while there is room.
pub fn admit(phones: &[Phone], counted_in: &HashMap<Phone, i64>, room: u64, now_hour: i64) -> Admitted {
    let mut admitted = Admitted::default();
    for phone in phones {
        match counted_in.get(phone) {
            Some(&h) if Reached::live(h, now_hour) => {
                if h != now_hour {
                    *admitted.moved.entry(h).or_default() += 1;
                }
                admitted.go.push(phone.clone());
            }
            _ if admitted.new < room => {
                admitted.new += 1;
                admitted.go.push(phone.clone());
            }
            _ => admitted.over.push(phone.clone()),
        }
    }
    admitted
}

/// Seconds until `left` more new people are sent at `rate` per second under the cap, waits for
/// the window included: sends go while there is room, and each bucket (this campaign's own
/// sends too) frees its room [`COUNTED_HOURS`] after its hour began. Assumes every one of them
/// is new to the business (an upper bound when some were reached already).
pub fn eta_seconds(left: u64, rate: u32, cap: u64, reached: &Reached, now_unix: i64) -> u64 {
    let now_hour = hour_of(now_unix);
    let mut frees: BinaryHeap<Reverse<(i64, u64)>> = reached
        .hours
        .iter()
        .filter(|(h, n)| Reached::live(**h, now_hour) && **n > 0)
        .map(|(h, n)| Reverse(((h + COUNTED_HOURS) * HOUR, *n)))
        .collect();
    let (mut t, mut left, mut room) = (now_unix as f64, left, reached.room(cap, now_hour));
    // Each turn sends what the room allows, then waits for the next bucket to free.
    for _ in 0..10_000 {
        let take = left.min(room);
        if take > 0 {
            frees.push(Reverse(((hour_of(t as i64) + COUNTED_HOURS) * HOUR, take)));
            t += super::sending::seconds_at_pace(take, rate);
            left -= take;
            room -= take;
        }
        if left == 0 {
            break;
        }
        let Some(Reverse((at, n))) = frees.pop() else { break };
        t = t.max(at as f64);
        room += n;
    }
    (t - now_unix as f64).ceil().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phones(n: usize) -> Vec<Phone> {
        (0..n).map(|i| Phone::stored(format!("+4915100000{i:03}"))).collect()
    }

    #[test]
    fn buckets_count_for_25_whole_hours() {
        let reached = Reached { hours: BTreeMap::from([(100, 5), (110, 7), (124, 1)]) };
        assert_eq!(reached.used(124), 13);
        assert_eq!(reached.used(125), 8, "hour 100 stops counting 25 hours after it began");
        assert_eq!(reached.room(10, 124), 0);
        assert_eq!(reached.room(10, 125), 2);
        assert_eq!(reached.stale(125), vec![100]);
        assert_eq!(reached.frees_at(124), 125 * 3600);
        assert_eq!(reached.frees_at(125), 135 * 3600);
        assert_eq!(hour_of(3600 * 7 + 3599), 7);
    }

    #[test]
    fn new_people_go_while_there_is_room_and_people_reached_already_always_go() {
        let p = phones(6);
        let counted = HashMap::from([(p[1].clone(), 120), (p[3].clone(), 124), (p[4].clone(), 99)]);
        let a = admit(&p, &counted, 2, 124);
        // p1 (hour 120) and p3 (this hour) were reached; p4's bucket (99) is gone: new again.
        assert_eq!(a.go, vec![p[0].clone(), p[1].clone(), p[2].clone(), p[3].clone()]);
        assert_eq!(a.over, vec![p[4].clone(), p[5].clone()]);
        assert_eq!(a.new, 2);
        assert_eq!(a.moved, BTreeMap::from([(120, 1)]));
        assert!(a.writes());
        let none = admit(&p[3..4], &counted, 0, 124);
        assert!(!none.writes(), "someone counted this hour changes nothing");
        assert_eq!(none.go.len(), 1);
    }

    #[test]
    fn the_tiers_caps() {
        assert_eq!(Tier::Tier50.daily_cap(), Some(50));
        assert_eq!(Tier::Tier1K.daily_cap(), Some(1_000));
        assert_eq!(Tier::Tier100K.daily_cap(), Some(100_000));
        assert_eq!(Tier::Unlimited.daily_cap(), None);
    }

    #[test]
    fn the_eta_counts_the_waits_for_the_window() {
        let now = 1000 * 3600 + 600;
        let empty = Reached::default();
        // Within the room: the pace alone.
        assert_eq!(eta_seconds(100, 10, 1000, &empty, now), 10);
        // 1,500 on a cap of 1,000 at 10/s: 1,000 in 100 s, then wait for the hour of those to
        // free (25 h after it began), then 500 more in 50 s.
        assert_eq!(eta_seconds(1500, 10, 1000, &empty, now), (1025 * 3600 - now + 50) as u64);
        // A full window whose oldest bucket frees in 2 hours.
        let full = Reached { hours: BTreeMap::from([(977, 400), (990, 600)]) };
        assert_eq!(eta_seconds(300, 10, 1000, &full, now), (1002 * 3600 - now + 30) as u64);
    }
}
