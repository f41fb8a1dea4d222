//! Send windows: the hours of the week a campaign may message a recipient, kept in each
//! recipient's own time or in one fixed zone (docs/send-windows.md). A recipient outside the
//! window waits until [`SendWindow::opens_at`]; [`SendWindow::zone_of`] says whose clock counts.
//!
//! The API shape, which is also how a window is stored:
//! `{"start": "09:00", "end": "20:00", "days": ["mon", "tue"], "timezone": "recipient"}`.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::phone::Phone;
use super::recipient::Recipient;
use super::zone::Zone;

/// The recipient field that may name the recipient's own zone (an IANA name).
pub const TIMEZONE_FIELD: &str = "timezone";

/// The days of the week in the API's spelling, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a campaign may send: from `start` to `end` (local wall-clock times; an `end` before the
/// `start` is an overnight window, belonging to the day it starts) on each of `days`, in the zone
/// `timezone` says. Deserialising (from the API or the table) checks it: `start != end`, `days`
/// non-empty, without repeats (then sorted Monday first). An empty `days` never opens (and
/// [`SendWindow::opens_at`] answers a day ahead to look again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WindowFields", into = "WindowFields")]
pub struct SendWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: Vec<Weekday>,
    pub timezone: WindowZone,
}

/// Whose clock a window is kept in: each recipient's ([`SendWindow::zone_of`]), or one zone for
/// every recipient. `"recipient"` or an IANA name in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowZone {
    Recipient,
    Fixed(Zone),
}

impl SendWindow {
    /// None when the window is open at `now` in `zone`; otherwise when it next opens (UTC).
    ///
    /// Wall-clock times are read in `zone` on each day: a time a clock change skips opens (or
    /// closes) at the first instant after the gap, a time that occurs twice at its first
    /// occurrence; a window wholly inside a gap opens when the gap ends and keeps its length, so
    /// every listed day has its window. The answer is less than 8 days ahead.
    pub fn opens_at(&self, zone: Zone, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = zone.local(now).date();
        // Yesterday's overnight window may still be open; a window on one day of the week opens
        // again within seven days.
        for offset in -1..=7 {
            let Some(day) = today.checked_add_signed(Duration::days(offset)) else { continue };
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let Some((open, close)) = self.on(zone, day) else { continue };
            if open <= now && now < close {
                return None;
            }
            if open > now {
                return Some(open);
            }
        }
        // Only a zone whose clock changes swallow a week of windows gets here: look again in
        // a day rather than send outside the window.
        Some(now + Duration::days(1))
    }

    /// The window of `day` in `zone` as instants (`end` equal to `start`, which the checks
    /// refuse, would be a whole day).
    fn on(&self, zone: Zone, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let end_day = if self.end <= self.start { day.succ_opt()? } else { day };
        let (from, to) = (day.and_time(self.start), end_day.and_time(self.end));
        let open = instant(zone, from)?;
        let close = instant(zone, to)?;
        // Both ends in one gap: rather than no window that day, its usual length from the gap's end.
        Some((open, if close > open { close } else { open + (to - from) }))
    }

    /// The zone a recipient's window is kept in: the fixed zone, or for `recipient` the
    /// recipient's own valid `timezone` field if it has one, else the zone of the number's country
    /// (single-zone countries; US and Canadian numbers by area code), else the account's default
    /// zone, else UTC.
    pub fn zone_of(&self, recipient: &Recipient, account_default: Option<Zone>) -> Zone {
        match self.timezone {
            WindowZone::Fixed(zone) => zone,
            WindowZone::Recipient => recipient
                .fields
                .get(TIMEZONE_FIELD)
                .and_then(|name| Zone::named(name.trim()))
                .or_else(|| zone_of_number(&recipient.phone_number))
                .or(account_default)
                .unwrap_or(Zone::UTC),
        }
    }
}

/// The instant a local wall-clock time names in `zone`: the first of two (a clock set back), or
/// the first valid instant after a gap (a clock set forward).
fn instant(zone: Zone, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are whole minutes, at most a day (Samoa skipped 30 December 2011).
    const GAP_MINUTES: i64 = 25 * 60;
    (0..=GAP_MINUTES).find_map(|m| match zone.instants(local + Duration::minutes(m)) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
        LocalResult::None => None,
    })
}

/// The zone of a number's country when the country keeps one clock, or of its area when a
/// longer prefix is listed (US and Canadian area codes, `1212`)
/// (`shared/data/calling-code-zones.tsv`, longest prefix first); none for a country or area
/// code with several, or a code the table does not know.
pub fn zone_of_number(phone: &Phone) -> Option<Zone> {
    let digits = phone.as_str().strip_prefix('+').unwrap_or(phone.as_str());
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let table = &*CALLING_CODE_ZONES;
    (1..=digits.len()).rev().find_map(|n| table.get(&digits[..n])).copied().flatten()
}

/// Calling-code prefix → its zone, or none for a prefix marked `multi`.
static CALLING_CODE_ZONES: LazyLock<HashMap<&'static str, Option<Zone>>> =
    LazyLock::new(|| calling_code_rows(CALLING_CODE_TABLE).filter_map(Result::ok).collect());

const CALLING_CODE_TABLE: &str = include_str!("../../data/calling-code-zones.tsv");

/// The table's rows: `prefix<TAB>zone or multi<TAB>places`, `#` comments and blank lines
/// skipped. A row that does not read is an error (the unit tests hold every row to it; at run
/// time such a row is left out).
fn calling_code_rows(text: &str) -> impl Iterator<Item = Result<(&str, Option<Zone>), String>> {
    text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|line| {
        let mut cols = line.split('\t');
        let (prefix, zone) = (cols.next().unwrap_or_default(), cols.next().unwrap_or_default());
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("not a calling-code prefix: {line}"));
        }
        match zone {
            "multi" => Ok((prefix, None)),
            name => Zone::named(name).map(|z| (prefix, Some(z))).ok_or_else(|| format!("not a zone: {line}")),
        }
    })
}

/// The window as the API and the table carry it; [`SendWindow`]'s own rule (`start != end`) is
/// checked in the conversion, each field's in its reader, so errors name the field.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a send window: {start, end, days, timezone}")]
struct WindowFields {
    #[serde(with = "clock")]
    start: NaiveTime,
    #[serde(with = "clock")]
    end: NaiveTime,
    #[serde(default = "every_day", with = "day_names")]
    days: Vec<Weekday>,
    timezone: WindowZone,
}

fn every_day() -> Vec<Weekday> {
    (0..7).filter_map(|d| Weekday::try_from(d).ok()).collect()
}

impl TryFrom<WindowFields> for SendWindow {
    type Error = String;

    fn try_from(f: WindowFields) -> Result<Self, String> {
        if f.start == f.end {
            return Err(format!(
                "end must differ from start (both are {}); an end before the start is an overnight window",
                f.start.format("%H:%M")
            ));
        }
        Ok(SendWindow { start: f.start, end: f.end, days: f.days, timezone: f.timezone })
    }
}

impl From<SendWindow> for WindowFields {
    fn from(w: SendWindow) -> Self {
        WindowFields { start: w.start, end: w.end, days: w.days, timezone: w.timezone }
    }
}

/// A value quoted in an error message, cut short so a long one does not fill the message.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("'{}…'", &text[..i]),
        None => format!("'{text}'"),
    }
}

/// `HH:MM`, 24-hour.
pub fn parse_clock(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    let two = |i: usize| -> Option<u32> {
        let (t, u) = (*b.get(i)?, *b.get(i + 1)?);
        (t.is_ascii_digit() && u.is_ascii_digit()).then(|| u32::from(t - b'0') * 10 + u32::from(u - b'0'))
    };
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    NaiveTime::from_hms_opt(two(0)?, two(3)?, 0)
}

mod clock {
    use super::*;

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format("%H:%M"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        parse_clock(&text).ok_or_else(|| {
            D::Error::custom(format!("{} is not a time of day as HH:MM, 24-hour (00:00 to 23:59)", quoted(&text)))
        })
    }
}

mod day_names {
    use super::*;

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(days.iter().map(|d| DAY_NAMES[d.num_days_from_monday() as usize]))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        if names.is_empty() {
            return Err(D::Error::custom("must name at least one day (leave days out for every day)"));
        }
        let mut days = Vec::with_capacity(names.len());
        for name in &names {
            let Some(i) = DAY_NAMES.iter().position(|n| n == name) else {
                return Err(D::Error::custom(format!(
                    "{} is not a day: use mon, tue, wed, thu, fri, sat, sun",
                    quoted(name)
                )));
            };
            let day = Weekday::try_from(i as u8).map_err(D::Error::custom)?;
            if days.contains(&day) {
                return Err(D::Error::custom(format!("'{name}' is named twice")));
            }
            days.push(day);
        }
        days.sort_by_key(Weekday::num_days_from_monday);
        Ok(days)
    }
}

impl Serialize for WindowZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WindowZone::Recipient => s.serialize_str("recipient"),
            WindowZone::Fixed(zone) => s.serialize_str(zone.name()),
        }
    }
}

impl<'de> Deserialize<'de> for WindowZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "recipient" {
            return Ok(WindowZone::Recipient);
        }
        Zone::named(&text).map(WindowZone::Fixed).ok_or_else(|| {
            D::Error::custom(format!(
                "{} is not an IANA time zone (such as Europe/Berlin) nor \"recipient\"",
                quoted(&text)
            ))
        })
    }
}

/// Serde for an optional zone kept as its IANA name (an account's `default_timezone`).
pub mod optional_zone {
    use super::*;

    pub fn serialize<S: Serializer>(zone: &Option<Zone>, s: S) -> Result<S::Ok, S::Error> {
        match zone {
            Some(z) => s.serialize_some(z.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zone>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        Zone::named(&text).map(Some).ok_or_else(|| {
            D::Error::custom(format!("{} is not an IANA time zone (such as Europe/Berlin)", quoted(&text)))
        })
    }

    /// For a change: absent stays `None`, `null` is `Some(None)` (remove it).
    pub fn change<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Zone>>, D::Error> {
        deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::recipient::Recipient;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn window(v: serde_json::Value) -> SendWindow {
        serde_json::from_value(v).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn berlin() -> Zone {
        Zone::named("Europe/Berlin").unwrap()
    }

    fn recipient(phone: &str, fields: &[(&str, &str)]) -> Recipient {
        let fields: BTreeMap<String, String> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Recipient::pending(&"c".into(), 0, Phone::e164(phone).unwrap(), fields, &"t".into())
    }

    #[test]
    fn reads_and_writes_the_api_shape() {
        let w = window(json!({"start": "09:00", "end": "20:30", "days": ["fri", "mon"], "timezone": "Europe/Berlin"}));
        assert_eq!(
            (w.start, w.end),
            (NaiveTime::from_hms_opt(9, 0, 0).unwrap(), NaiveTime::from_hms_opt(20, 30, 0).unwrap())
        );
        assert_eq!(w.days, [Weekday::Mon, Weekday::Fri], "Monday first");
        assert_eq!(w.timezone, WindowZone::Fixed(berlin()));
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"start": "09:00", "end": "20:30", "days": ["mon", "fri"], "timezone": "Europe/Berlin"})
        );
        let every = window(json!({"start": "22:00", "end": "06:00", "timezone": "recipient"}));
        assert_eq!(every.days.len(), 7);
        assert_eq!(serde_json::to_value(&every).unwrap()["timezone"], "recipient");
        assert_eq!(serde_json::to_value(&every).unwrap()["days"][6], "sun");
    }

    #[test]
    fn refuses_bad_windows_naming_the_rule() {
        let err = |v: serde_json::Value| serde_json::from_value::<SendWindow>(v).unwrap_err().to_string();
        for bad in ["9:00", "24:00", "12:60", "12:00:00", "noon", "12-00", " 9:00", "１２:００"] {
            let e = err(json!({"start": bad, "end": "20:00", "timezone": "UTC"}));
            assert!(e.contains("is not a time of day as HH:MM"), "{bad}: {e}");
        }
        let e = err(json!({"start": "09:00", "end": "09:00", "timezone": "UTC"}));
        assert!(e.starts_with("end must differ from start (both are 09:00)"), "{e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "timezone": "Mars/Olympus"}));
        assert!(e.starts_with("'Mars/Olympus' is not an IANA time zone"), "{e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "timezone": "europe/berlin"}));
        assert!(e.contains("not an IANA time zone"), "{e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "timezone": "x".repeat(500)}));
        assert!(e.len() < 120, "a long value is cut short: {e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "days": [], "timezone": "UTC"}));
        assert!(e.starts_with("must name at least one day"), "{e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "days": ["mon", "Monday"], "timezone": "UTC"}));
        assert!(e.starts_with("'Monday' is not a day"), "{e}");
        let e = err(json!({"start": "09:00", "end": "10:00", "days": ["mon", "mon"], "timezone": "UTC"}));
        assert!(e.starts_with("'mon' is named twice"), "{e}");
        assert!(err(json!({"start": "09:00", "end": "10:00"})).contains("missing field `timezone`"));
        assert!(err(json!({"start": "09:00", "end": "10:00", "timezone": "UTC", "tz": 1})).contains("unknown field"));
    }

    #[test]
    fn open_inside_the_window_and_the_next_opening_outside_it() {
        let w = window(json!({"start": "09:00", "end": "20:00", "timezone": "Europe/Berlin"}));
        // 2026-06-10 is a Wednesday; Berlin is UTC+2 in summer.
        assert_eq!(w.opens_at(berlin(), utc("2026-06-10T07:00:00Z")), None, "09:00 opens");
        assert_eq!(w.opens_at(berlin(), utc("2026-06-10T17:59:59Z")), None);
        assert_eq!(w.opens_at(berlin(), utc("2026-06-10T06:59:59Z")), Some(utc("2026-06-10T07:00:00Z")));
        assert_eq!(
            w.opens_at(berlin(), utc("2026-06-10T18:00:00Z")),
            Some(utc("2026-06-11T07:00:00Z")),
            "20:00 closes: tomorrow at 09:00"
        );
        // The same window kept in another zone.
        let tokyo = Zone::named("Asia/Tokyo").unwrap();
        assert_eq!(w.opens_at(tokyo, utc("2026-06-10T07:00:00Z")), None, "16:00 in Tokyo");
        assert_eq!(w.opens_at(tokyo, utc("2026-06-10T12:00:00Z")), Some(utc("2026-06-11T00:00:00Z")));
    }

    #[test]
    fn only_listed_days_open() {
        let w = window(json!({"start": "09:00", "end": "17:00", "days": ["mon", "wed"], "timezone": "UTC"}));
        // Wednesday 2026-06-10 after closing: next Monday.
        assert_eq!(w.opens_at(Zone::UTC, utc("2026-06-10T18:00:00Z")), Some(utc("2026-06-15T09:00:00Z")));
        // Tuesday inside the hours: closed, Wednesday opens.
        assert_eq!(w.opens_at(Zone::UTC, utc("2026-06-09T10:00:00Z")), Some(utc("2026-06-10T09:00:00Z")));
        // One day a week, just after it closed: a week on.
        let sunday = window(json!({"start": "10:00", "end": "11:00", "days": ["sun"], "timezone": "UTC"}));
        assert_eq!(sunday.opens_at(Zone::UTC, utc("2026-06-14T11:00:00Z")), Some(utc("2026-06-21T10:00:00Z")));
    }

    #[test]
    fn overnight_windows_belong_to_the_day_they_start() {
        let w = window(json!({"start": "22:00", "end": "06:00", "days": ["fri"], "timezone": "UTC"}));
        // Friday 2026-06-12 22:00 to Saturday 06:00.
        assert_eq!(w.opens_at(Zone::UTC, utc("2026-06-12T23:00:00Z")), None);
        assert_eq!(w.opens_at(Zone::UTC, utc("2026-06-13T05:59:00Z")), None, "Saturday morning is Friday's night");
        assert_eq!(w.opens_at(Zone::UTC, utc("2026-06-13T06:00:00Z")), Some(utc("2026-06-19T22:00:00Z")));
        assert_eq!(
            w.opens_at(Zone::UTC, utc("2026-06-12T05:00:00Z")),
            Some(utc("2026-06-12T22:00:00Z")),
            "Friday morning is Thursday's night"
        );
        assert_eq!(
            w.opens_at(Zone::UTC, utc("2026-06-13T23:00:00Z")),
            Some(utc("2026-06-19T22:00:00Z")),
            "not on Saturday"
        );
    }

    #[test]
    fn clock_changes_open_at_the_first_valid_instant() {
        let ny = Zone::named("America/New_York").unwrap();
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day.
        let w = window(json!({"start": "02:30", "end": "05:00", "timezone": "America/New_York"}));
        assert_eq!(w.opens_at(ny, utc("2026-03-08T06:00:00Z")), Some(utc("2026-03-08T07:00:00Z")), "03:00 EDT");
        assert_eq!(w.opens_at(ny, utc("2026-03-08T07:30:00Z")), None, "03:30 EDT");
        assert_eq!(w.opens_at(ny, utc("2026-03-08T09:00:00Z")), Some(utc("2026-03-09T06:30:00Z")), "02:30 EDT");
        // A window wholly inside the gap opens when it ends, for its usual 40 minutes.
        let gap = window(json!({"start": "02:10", "end": "02:50", "timezone": "America/New_York"}));
        assert_eq!(gap.opens_at(ny, utc("2026-03-08T06:00:00Z")), Some(utc("2026-03-08T07:00:00Z")));
        assert_eq!(gap.opens_at(ny, utc("2026-03-08T07:39:00Z")), None);
        assert_eq!(gap.opens_at(ny, utc("2026-03-08T07:40:00Z")), Some(utc("2026-03-09T06:10:00Z")));
        // 2026-11-01: 01:30 happens twice; the window opens at the first.
        let w = window(json!({"start": "01:30", "end": "04:00", "timezone": "America/New_York"}));
        assert_eq!(w.opens_at(ny, utc("2026-11-01T05:00:00Z")), Some(utc("2026-11-01T05:30:00Z")));
        // 09:00 to 17:00 stays 09:00 to 17:00 local on either side of a change.
        let office = window(json!({"start": "09:00", "end": "17:00", "timezone": "America/New_York"}));
        assert_eq!(office.opens_at(ny, utc("2026-03-07T22:00:00Z")), Some(utc("2026-03-08T13:00:00Z")));
        assert_eq!(office.opens_at(ny, utc("2026-03-07T13:59:00Z")), Some(utc("2026-03-07T14:00:00Z")), "09:00 EST");
    }

    #[test]
    fn the_next_opening_is_always_less_than_eight_days_ahead() {
        let zones = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kolkata"];
        let windows = [
            json!({"start": "00:00", "end": "00:01", "days": ["sun"]}),
            json!({"start": "23:59", "end": "00:00", "days": ["sat"]}),
            json!({"start": "02:00", "end": "03:00", "days": ["sun"]}),
            json!({"start": "22:00", "end": "06:00", "days": ["mon", "thu"]}),
            json!({"start": "09:00", "end": "17:00"}),
        ];
        let mut now = utc("2026-01-01T00:00:00Z");
        while now < utc("2027-01-01T00:00:00Z") {
            for name in zones {
                let zone = Zone::named(name).unwrap();
                for w in &windows {
                    let mut w = w.clone();
                    w["timezone"] = json!(name);
                    let w = window(w);
                    if let Some(at) = w.opens_at(zone, now) {
                        assert!(at > now && at - now < Duration::days(8), "{name} {w:?} at {now}: {at}");
                        assert_eq!(w.opens_at(zone, at), None, "{name} {w:?}: open at its opening {at}");
                    }
                }
            }
            now += Duration::minutes(997);
        }
    }

    #[test]
    fn the_zone_is_the_fields_then_the_countrys_then_the_accounts_then_utc() {
        let w = window(json!({"start": "09:00", "end": "20:00", "timezone": "recipient"}));
        let tokyo = Zone::named("Asia/Tokyo").unwrap();
        let zone = |phone: &str, fields: &[(&str, &str)], default: Option<Zone>| {
            w.zone_of(&recipient(phone, fields), default).name().to_string()
        };
        assert_eq!(zone("+447700900123", &[("timezone", "America/Chicago")], None), "America/Chicago");
        assert_eq!(zone("+447700900123", &[("timezone", " Asia/Dubai ")], None), "Asia/Dubai", "trimmed");
        assert_eq!(zone("+447700900123", &[("timezone", "somewhere")], None), "Europe/London", "invalid: ignored");
        assert_eq!(zone("+4915112345678", &[], Some(tokyo)), "Europe/Berlin");
        assert_eq!(zone("+919876543210", &[], None), "Asia/Kolkata");
        assert_eq!(zone("+18765550123", &[], None), "America/Jamaica", "a NANP island of one zone");
        assert_eq!(zone("+14155550123", &[], Some(tokyo)), "America/Los_Angeles", "a US area code of one zone");
        assert_eq!(zone("+14155550123", &[("timezone", "Asia/Tokyo")], None), "Asia/Tokyo", "the field wins");
        // Several zones: the account's default, else UTC.
        assert_eq!(zone("+12085550123", &[], Some(tokyo)), "Asia/Tokyo", "Idaho's area code straddles");
        assert_eq!(zone("+12085550123", &[], None), "UTC");
        assert_eq!(zone("+5511987654321", &[], None), "UTC");
        assert_eq!(zone("+79161234567", &[], Some(tokyo)), "Asia/Tokyo");
        assert_eq!(zone("+79161234567", &[("timezone", "Europe/Moscow")], None), "Europe/Moscow");
        // A longer prefix inside a country of several zones, and inside a country of one.
        assert_eq!(zone("+77011234567", &[], None), "Asia/Almaty");
        assert_eq!(zone("+6433051234", &[], None), "Pacific/Chatham");
        assert_eq!(zone("+6421123456", &[], None), "Pacific/Auckland");
        let fixed = window(json!({"start": "09:00", "end": "20:00", "timezone": "Asia/Tokyo"}));
        let r = recipient("+4915112345678", &[("timezone", "Europe/Paris")]);
        assert_eq!(fixed.zone_of(&r, None), tokyo, "a fixed zone wins");
    }

    #[test]
    fn every_row_of_the_calling_code_table_reads_and_prefixes_are_unique() {
        let rows: Vec<_> = calling_code_rows(CALLING_CODE_TABLE).collect();
        let errors: Vec<&String> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(rows.len() > 600, "{}", rows.len());
        // Named, so a second row for a prefix (which would silently replace the first) is found.
        let mut seen = std::collections::HashSet::new();
        let twice: Vec<&str> =
            rows.iter().filter_map(|r| r.as_ref().ok()).map(|(p, _)| *p).filter(|p| !seen.insert(*p)).collect();
        assert!(twice.is_empty(), "listed twice: {twice:?}");
        assert_eq!(CALLING_CODE_ZONES.len(), rows.len());
        let zone = |digits: &str| zone_of_number(&Phone::e164(&format!("+{digits}")).unwrap());
        assert_eq!(zone("442079460958"), Zone::named("Europe/London"));
        assert_eq!(zone("5491123456789"), Zone::named("America/Argentina/Buenos_Aires"));
        for several in ["12085550123", "525512345678", "61412345678", "6281234567890", "2622631234"] {
            assert_eq!(zone(several), None, "{several}");
        }
        assert_eq!(zone("262692123456"), Zone::named("Indian/Reunion"));
        assert_eq!(zone_of_number(&Phone::stored("+44x".into())), None);
        assert_eq!(zone("999123456"), None, "an unknown code");
    }

    #[test]
    fn us_and_canadian_numbers_take_the_zone_of_their_area_code() {
        let zone = |phone: &str| zone_of_number(&Phone::e164(phone).unwrap()).map(|z| z.name().to_string());
        let cases = [
            ("+12125550100", "America/New_York"),
            ("+16465550100", "America/New_York"),
            ("+14155550100", "America/Los_Angeles"),
            ("+13125550100", "America/Chicago"),
            ("+16025550100", "America/Phoenix"),
            ("+14165550100", "America/Toronto"),
            ("+18085550100", "Pacific/Honolulu"),
            ("+13135550100", "America/Detroit"),
            ("+13175550100", "America/Indiana/Indianapolis"),
            ("+16045550100", "America/Vancouver"),
            ("+19025550100", "America/Halifax"),
        ];
        for (phone, name) in cases {
            assert_eq!(zone(phone).as_deref(), Some(name), "{phone}");
        }
        // Straddling a time-zone line: Idaho, the Florida panhandle, Michigan's Upper Peninsula,
        // northwestern Ontario, Newfoundland and Labrador, and Arizona's Navajo Nation.
        for phone in ["+12085550100", "+18505550100", "+19065550100", "+18075550100", "+17095550100", "+19285550100"] {
            assert_eq!(zone(phone), None, "{phone}");
        }
        // A non-geographic code is not listed: it falls back too.
        assert_eq!(zone("+18005550100"), None);
    }

    #[test]
    fn an_accounts_zone_is_an_iana_name_or_null() {
        #[derive(Debug, Deserialize, Serialize)]
        struct A {
            #[serde(default, with = "optional_zone")]
            z: Option<Zone>,
        }
        let a: A = serde_json::from_value(json!({"z": "Asia/Kolkata"})).unwrap();
        assert_eq!(serde_json::to_value(&a).unwrap(), json!({"z": "Asia/Kolkata"}));
        assert_eq!(serde_json::from_value::<A>(json!({"z": null})).unwrap().z, None);
        let e = serde_json::from_value::<A>(json!({"z": "UTC+05:00"})).unwrap_err().to_string();
        assert!(e.starts_with("'UTC+05:00' is not an IANA time zone"), "{e}");
    }
}
