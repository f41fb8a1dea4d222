//! Ids: every account, template, campaign, recipient, API key, job and run is named by a UUID
//! (v4) made here; an id from outside (a path, a body, a schedule's payload) is parsed into an
//! [`Id`] once, where it enters (a value that is not a UUID names nothing).

use super::text::text_newtype;
use crate::error::Invalid;

text_newtype!(
    /// A UUID naming something of this service.
    Id
);

impl Id {
    /// A new id.
    pub fn generate() -> Id {
        Id(uuid::Uuid::new_v4().to_string())
    }

    /// `value` if it is an id (a UUID), else nothing.
    pub fn parse(value: &str) -> Option<Id> {
        uuid::Uuid::parse_str(value).ok().map(|_| Id(value.to_string()))
    }

    /// The id a request field refers to; the message does not repeat the value, which may be
    /// of any length.
    pub fn reference(field: &str, value: &str) -> Result<Id, Invalid> {
        Id::parse(value).ok_or_else(|| {
            Invalid(format!("{field} must be the id (a UUID) of an existing {}", field.trim_end_matches("_id")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Id;

    #[test]
    fn new_ids_are_ids_and_differ() {
        let (a, b) = (Id::generate(), Id::generate());
        assert!(Id::parse(&a).is_some() && Id::parse(&b).is_some() && a != b);
        assert!(Id::parse("not-an-id").is_none() && Id::parse("").is_none());
        let e = Id::reference("account_id", "a1").unwrap_err();
        assert_eq!(e.0, "account_id must be the id (a UUID) of an existing account");
    }
}
