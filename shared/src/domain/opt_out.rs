//! Opt-outs from an account's marketing messages: the rule (a MARKETING template never goes to
//! a number that opted out; other categories do) and Meta's failure code that records one.

use crate::domain::template::Category;

/// Meta's code for a message refused because the person stopped marketing messages from this
/// business. A failure with it records an opt-out for the account.
pub const OPTED_OUT_CODE: i64 = 131050;

/// Why an opt-out was recorded from a failed message.
pub const FROM_FAILURE: &str = "a message failed with 131050 (the person stopped marketing messages)";

/// Whether opt-outs hold back a template of this category.
pub fn applies_to(category: Category) -> bool {
    category == Category::Marketing
}

/// Whether a failure with this code records an opt-out.
pub fn is_opt_out(code: Option<i64>) -> bool {
    code == Some(OPTED_OUT_CODE)
}

/// What the recipient shows when the sender held a message back, and an import's error line.
pub fn not_sent() -> String {
    "not sent: the person opted out of this account's marketing messages".into()
}

pub fn not_added(phone: &str) -> String {
    format!("{phone} opted out of this account's marketing messages; not added")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marketing_is_held_back_and_only_131050_records_an_opt_out() {
        assert!(applies_to(Category::Marketing));
        assert!(!applies_to(Category::Utility) && !applies_to(Category::Authentication));
        assert!(is_opt_out(Some(131050)));
        assert!(!is_opt_out(Some(131026)) && !is_opt_out(None));
    }
}
