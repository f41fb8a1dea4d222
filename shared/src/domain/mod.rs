//! The rules of the product, free of AWS and HTTP types so they are unit-tested without I/O.

pub mod account;
pub mod api_key;
pub mod campaign;
pub mod daily_cap;
pub mod delivery;
pub mod events;
pub mod export;
pub mod header;
pub mod id;
pub mod import;
pub mod job;
pub mod limits;
pub mod opt_out;
pub mod phone;
pub mod recipient;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod sending;
pub mod template;
pub mod upload;
pub mod window;
pub mod zone;

mod text;

use chrono::{DateTime, SecondsFormat, Utc};

use text::text_newtype;

text_newtype!(
    /// A moment, stored and shown as RFC 3339 in UTC with second precision
    /// (`2024-01-01T10:00:05Z`), which also sorts correctly as text.
    Timestamp
);

pub fn format_time(t: DateTime<Utc>) -> Timestamp {
    Timestamp(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

pub fn now() -> Timestamp {
    format_time(Utc::now())
}

/// Reads an RFC 3339 time with any offset and returns it in UTC.
pub fn parse_time(field: &str, value: &str) -> Result<Timestamp, crate::error::Invalid> {
    DateTime::parse_from_rfc3339(value.trim()).map(|t| format_time(t.with_timezone(&Utc))).map_err(|_| {
        crate::error::Invalid(format!(
            "{field} must be an RFC 3339 date-time such as 2024-01-01T10:00:00Z or 2024-01-01T11:00:00+01:00"
        ))
    })
}

/// A required text field: at most `max` characters as sent (the limit the contract states),
/// not empty once trimmed; stored trimmed.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, crate::error::Invalid> {
    if value.chars().count() > max {
        return Err(crate::error::Invalid(format!("{field} must be at most {max} characters")));
    }
    let v = value.trim();
    if v.is_empty() {
        return Err(crate::error::Invalid(format!("{field} must not be empty")));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_returned_in_utc() {
        assert_eq!(parse_time("t", "2027-01-01T09:00:00+01:00").unwrap(), "2027-01-01T08:00:00Z");
        assert_eq!(parse_time("t", "2027-01-01T09:00:00.5-02:30").unwrap(), "2027-01-01T11:30:00Z");
        let err = parse_time("scheduled_at", "tomorrow").unwrap_err();
        assert!(err.0.starts_with("scheduled_at must be"));
    }

    #[test]
    fn required_text_trims_and_limits() {
        assert_eq!(required_text("name", "  a ", 5).unwrap(), "a");
        assert!(required_text("name", "   ", 5).unwrap_err().0.contains("name must not be empty"));
        assert!(required_text("name", "abcdef", 5).unwrap_err().0.contains("at most 5"));
        // The limit is on the value as sent: padding does not slip a longer value through.
        assert!(required_text("name", "a     ", 5).unwrap_err().0.contains("at most 5"));
    }
}
