//! Fault injection: the recipient numbers that always provoke a fault ([`FAULT_NUMBERS`]), the
//! rules injected through [`FakeState::inject`](super::FakeState::inject) or `POST /_fake/faults`
//! ([`Injection`]: an error code, a delay, a late `failed` webhook or an ambiguous answer), the
//! ambiguous answers themselves ([`FakeAnswer`]), and how a send finds the rule or number that
//! applies to it.

use serde::{Deserialize, Serialize};

use super::errors::MetaError;
use super::message::normalize_number;

/// What a fault number provokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The error envelope with this code (status and message from
    /// [`ERROR_CODES`](super::ERROR_CODES)).
    Error(u32),
    /// A normal `200`, but only after the configured `timeout_ms` ([`FakeConfig`](super::FakeConfig)).
    Timeout,
    /// A normal `200` with a wamid, then a `failed` status webhook with this code (after a
    /// `sent` one when `sent_first`), the way Meta reports some failures.
    FailedStatus { code: u32, sent_first: bool },
}

/// Recipient numbers that always provoke a fault (fictional US 555-9xxx numbers). A `to` matches
/// after normalising it to `+` and its digits.
pub const FAULT_NUMBERS: &[(&str, Fault)] = &[
    ("+14155559001", Fault::Error(130429)),
    ("+14155559002", Fault::Error(131026)),
    ("+14155559003", Fault::Error(131056)),
    ("+14155559004", Fault::Error(132001)),
    ("+14155559005", Fault::Error(190)),
    ("+14155559006", Fault::Error(131000)),
    ("+14155559007", Fault::Timeout),
    ("+14155559008", Fault::Error(131050)),
    ("+14155559009", Fault::Error(131048)),
    ("+14155559010", Fault::Error(368)),
    ("+14155559011", Fault::FailedStatus { code: 131026, sent_first: true }),
    ("+14155559012", Fault::FailedStatus { code: 131050, sent_first: false }),
];

/// The fault a fault number provokes; `to` is `+` and digits.
pub(super) fn fault_number(to: &str) -> Option<Fault> {
    FAULT_NUMBERS.iter().find(|(number, _)| *number == to).map(|(_, fault)| *fault)
}

/// An answer that leaves the sender not knowing whether the message was taken: what a flaky
/// network or a load balancer in front of the API produces. Never followed by status webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FakeAnswer {
    /// HTTP 200 with Meta's success shape but an empty `messages` array: no message id.
    NoWamid,
    /// HTTP 502 with a load balancer's HTML page ([`GATEWAY_502_BODY`]), not JSON.
    // snake_case alone would make it `gateway502`.
    #[serde(rename = "gateway_502")]
    Gateway502,
    /// HTTP 504 with a load balancer's HTML page ([`GATEWAY_504_BODY`]), not JSON.
    #[serde(rename = "gateway_504")]
    Gateway504,
    /// The request is read in full and recorded, then the connection is broken before a complete
    /// answer (recorded with status 0).
    Reset,
}

/// The body of [`FakeAnswer::Gateway502`], as an nginx-style load balancer writes it.
pub const GATEWAY_502_BODY: &str = concat!(
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n",
    "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
);

/// The body of [`FakeAnswer::Gateway504`].
pub const GATEWAY_504_BODY: &str = concat!(
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n",
    "<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n",
);

/// A rule injected through [`FakeState::inject`](super::FakeState::inject) or `POST /_fake/faults`: the next `count`
/// well-formed sends to `to` (any number when `None`) fail with `code` (forever when `count` is
/// `None`), answered after `delay_ms`. Code `0` only delays the answer; the send is then handled
/// as usual. With `webhook`, the send is accepted and `code` comes later as a `failed` status
/// webhook instead. With `answer`, the send gets that ambiguous answer instead (`code` and
/// `webhook` are then not used).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    #[serde(default)]
    pub to: Option<String>,
    /// Required in the JSON of `POST /_fake/faults` unless `answer` is given.
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub webhook: bool,
    #[serde(default)]
    pub answer: Option<FakeAnswer>,
}

impl Injection {
    /// Every send fails with `code`, until cleared.
    pub fn error(code: u32) -> Injection {
        Injection { to: None, code, count: None, delay_ms: None, webhook: false, answer: None }
    }

    /// Every send is answered `delay_ms` later than usual, until cleared.
    pub fn delay(delay_ms: u64) -> Injection {
        Injection { delay_ms: Some(delay_ms), ..Injection::error(0) }
    }

    /// Every send gets this ambiguous answer, until cleared.
    pub fn answer(answer: FakeAnswer) -> Injection {
        Injection { answer: Some(answer), ..Injection::error(0) }
    }

    /// Only sends to this number.
    pub fn to(mut self, number: impl Into<String>) -> Injection {
        self.to = Some(number.into());
        self
    }

    /// Only the next `count` matching sends.
    pub fn times(mut self, count: u32) -> Injection {
        self.count = Some(count);
        self
    }

    /// Answer `delay_ms` later.
    pub fn delayed(mut self, delay_ms: u64) -> Injection {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// Accept the send and report `code` as a `failed` status webhook instead.
    pub fn by_webhook(mut self) -> Injection {
        self.webhook = true;
        self
    }

    fn matches(&self, to: &str) -> bool {
        match &self.to {
            None => true,
            Some(number) => normalize_number(number).as_deref() == Some(to),
        }
    }

    /// Refuses a rule of `POST /_fake/faults` that cannot work as given; `code_given` tells
    /// whether its JSON had a `code` (it defaults to 0 only for an answer).
    pub(super) fn check(&self, code_given: bool) -> Result<(), MetaError> {
        if let Some(to) = &self.to
            && normalize_number(to).is_none()
        {
            return Err(MetaError::invalid(format!("to {to:?} is not a phone number")));
        }
        match self.refusal(code_given) {
            Some(reason) => Err(MetaError::invalid(reason)),
            None => Ok(()),
        }
    }

    /// Why the rule makes no sense, if it does not: a zero count, an answer mixed with a code
    /// or a webhook, or an error rule without a code that does anything.
    fn refusal(&self, code_given: bool) -> Option<&'static str> {
        if self.count == Some(0) {
            return Some("count must be at least 1 (leave it out for forever)");
        }
        match self.answer {
            Some(_) if self.code != 0 => Some("an answer is not an error code: give answer or code, not both"),
            Some(_) if self.webhook => Some("an answer is never followed by webhooks: leave webhook out"),
            Some(_) => None,
            None if !code_given => Some("code is required (or an answer)"),
            None if self.code == 0 && self.delay_ms.is_none() => Some("code 0 only delays: give delay_ms"),
            None if self.code == 0 && self.webhook => Some("webhook reports an error code: give a code other than 0"),
            None => None,
        }
    }
}

/// Takes the first rule that matches `to` (`+` and digits), as it was before this use: a rule
/// with a `count` loses one use, and is removed with its last.
pub(super) fn take_matching(rules: &mut Vec<Injection>, to: &str) -> Option<Injection> {
    let i = rules.iter().position(|rule| rule.matches(to))?;
    let rule = rules[i].clone();
    match rules[i].count.as_mut() {
        Some(count) if *count <= 1 => {
            rules.remove(i);
        }
        Some(count) => *count -= 1,
        None => {}
    }
    Some(rule)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use http::StatusCode;

    use super::*;
    use crate::fake_whatsapp::errors::{ERROR_CODES, error_for};

    #[test]
    fn every_fault_number_code_has_its_own_status() {
        for (_, fault) in FAULT_NUMBERS {
            if let Fault::Error(code) | Fault::FailedStatus { code, .. } = fault {
                assert!(ERROR_CODES.iter().any(|(c, _, _)| c == code), "{code} missing from ERROR_CODES");
            }
        }
        assert_eq!(error_for(131000).0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_for(424242), (StatusCode::BAD_REQUEST, Cow::Owned("(#424242) An error occurred".into())));
    }
}
