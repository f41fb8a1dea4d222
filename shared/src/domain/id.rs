//! Ids: every account, template, campaign, recipient, API key, job and run is named by a UUID
//! (v4) made here; an id from outside is checked with [`is_id`] before it is looked up (a
//! value that is not a UUID names nothing).

/// A new id.
pub fn new() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `value` can name something (is a UUID).
pub fn is_id(value: &str) -> bool {
    uuid::Uuid::parse_str(value).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_ids_are_ids_and_differ() {
        let (a, b) = (super::new(), super::new());
        assert!(super::is_id(&a) && super::is_id(&b) && a != b);
        assert!(!super::is_id("not-an-id") && !super::is_id(""));
    }
}
