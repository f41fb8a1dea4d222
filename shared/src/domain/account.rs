//! WhatsApp Business accounts (one phone number each) and their messaging tiers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::campaign::PricingCategory;
use super::id::Id;
use super::limits::{ACCESS_TOKEN_CHARS, ACCOUNT_NAME_CHARS, META_ID_CHARS};
use super::window::optional_zone;
use super::{Timestamp, required_text};
use crate::domain::secret::Secret;
use crate::error::Invalid;

/// Meta's messaging-limit tiers. The pace this project allows for each lives in [`Tier::rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    #[serde(rename = "TIER_50")]
    Tier50,
    #[serde(rename = "TIER_250")]
    Tier250,
    #[serde(rename = "TIER_1K")]
    Tier1K,
    #[serde(rename = "TIER_2K")]
    Tier2K,
    #[serde(rename = "TIER_10K")]
    Tier10K,
    #[serde(rename = "TIER_100K")]
    Tier100K,
    #[serde(rename = "TIER_UNLIMITED")]
    Unlimited,
}

impl Tier {
    pub const NAMES: &'static str = "TIER_50, TIER_250, TIER_1K, TIER_2K, TIER_10K, TIER_100K, TIER_UNLIMITED";

    /// Messages per second this project sends for the tier; `None` = only the number's cap.
    pub fn rate(self) -> Option<u32> {
        match self {
            Tier::Tier50 | Tier::Tier250 => Some(5),
            Tier::Tier1K => Some(10),
            Tier::Tier2K => Some(20),
            Tier::Tier10K => Some(30),
            Tier::Tier100K => Some(80),
            Tier::Unlimited => None,
        }
    }
}

pub const DEFAULT_THROUGHPUT_MPS: u32 = 80;
pub const MAX_THROUGHPUT_MPS: u32 = 1000;

/// An account as stored and returned. The access token is kept apart, in Secrets Manager (see
/// docs/api.md), and is never part of this struct, so it can't leak into a response, a stored
/// item or a log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Id,
    pub name: String,
    pub phone_number_id: String,
    pub business_account_id: String,
    pub messaging_limit_tier: Tier,
    pub throughput_mps: u32,
    /// Inbound texts that record an opt-out from the account's marketing (compared trimmed and
    /// case-insensitively); `opt_in_keywords` remove it.
    #[serde(default = "default_opt_out_keywords")]
    pub opt_out_keywords: Vec<String>,
    #[serde(default = "default_opt_in_keywords")]
    pub opt_in_keywords: Vec<String>,
    /// What one billable message costs per pricing category (all in one currency): turns a
    /// campaign's billable counts into its `cost`. Empty: no cost is shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<PricingCategory, Price>,
    /// The zone a campaign's send window is kept in for a recipient whose zone is not known
    /// otherwise (an IANA name; see docs/send-windows.md).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_zone")]
    pub default_timezone: Option<crate::domain::zone::Zone>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn default_opt_out_keywords() -> Vec<String> {
    vec!["STOP".into(), "UNSUBSCRIBE".into()]
}

fn default_opt_in_keywords() -> Vec<String> {
    vec!["START".into()]
}

/// What one billable message of a category costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub amount: f64,
    /// ISO 4217 (`USD`, `EUR`, `INR`, …).
    pub currency: String,
}

/// The most a price per message may be (a guard against a price meant per thousand).
pub const MAX_PRICE: f64 = 100.0;
pub const PRICE_DECIMALS: i32 = 6;

/// A price table as given: amounts from 0 to [`MAX_PRICE`], kept to [`PRICE_DECIMALS`] decimal
/// places (so that every amount is a number DynamoDB stores), one three-letter currency for all.
fn prices(table: BTreeMap<PricingCategory, Price>) -> Result<BTreeMap<PricingCategory, Price>, Invalid> {
    let mut currency: Option<String> = None;
    table
        .into_iter()
        .map(|(category, p)| {
            let field = format!("prices.{}", category.as_str());
            if !p.amount.is_finite() || p.amount < 0.0 || p.amount > MAX_PRICE {
                return Err(Invalid(format!(
                    "{field}.amount must be between 0 and {MAX_PRICE} (the price of one message)"
                )));
            }
            let code = p.currency.trim().to_ascii_uppercase();
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(Invalid(format!("{field}.currency must be a three-letter ISO 4217 code such as USD")));
            }
            match &currency {
                Some(c) if *c != code => {
                    return Err(Invalid(format!("{field}.currency is {code}; every price must be in {c}")));
                }
                _ => currency = Some(code.clone()),
            }
            let scale = 10f64.powi(PRICE_DECIMALS);
            Ok((category, Price { amount: (p.amount * scale).round() / scale, currency: code }))
        })
        .collect()
}

/// The most keywords of each kind, and the longest keyword.
pub const KEYWORDS: usize = 20;
pub const KEYWORD_CHARS: usize = 30;

/// A keyword list as given: each trimmed, 1 to [`KEYWORD_CHARS`] characters, at most
/// [`KEYWORDS`] of them.
fn keywords(field: &str, list: Vec<String>) -> Result<Vec<String>, Invalid> {
    if list.len() > KEYWORDS {
        return Err(Invalid(format!("{field} has {} keywords; at most {KEYWORDS}", list.len())));
    }
    list.iter().map(|k| required_text(field, k, KEYWORD_CHARS)).collect()
}

/// Both lists, checked, and no keyword in both.
fn keyword_lists(out: Vec<String>, r#in: Vec<String>) -> Result<(Vec<String>, Vec<String>), Invalid> {
    let (out, r#in) = (keywords("opt_out_keywords", out)?, keywords("opt_in_keywords", r#in)?);
    if let Some(both) = out.iter().find(|k| r#in.iter().any(|i| i.eq_ignore_ascii_case(k))) {
        return Err(Invalid(format!("'{both}' is in both opt_out_keywords and opt_in_keywords")));
    }
    Ok((out, r#in))
}

impl Account {
    /// What an inbound text asks of the account's marketing: `Some(true)` stop (an opt-out
    /// keyword), `Some(false)` resume (an opt-in keyword), `None` neither.
    pub fn keyword(&self, text: &str) -> Option<bool> {
        let text = text.trim();
        let is = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(text));
        if is(&self.opt_out_keywords) {
            Some(true)
        } else if is(&self.opt_in_keywords) {
            Some(false)
        } else {
            None
        }
    }

    /// Messages per second for this account: the tier's pace, never above the number's cap.
    pub fn send_rate(&self) -> u32 {
        match self.messaging_limit_tier.rate() {
            Some(r) => r.min(self.throughput_mps),
            None => self.throughput_mps,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub name: String,
    pub phone_number_id: String,
    pub business_account_id: String,
    /// Write-only; `Debug` shows it redacted.
    pub access_token: Secret,
    pub messaging_limit_tier: Tier,
    pub throughput_mps: Option<u32>,
    #[serde(default)]
    pub opt_out_keywords: Option<Vec<String>>,
    #[serde(default)]
    pub opt_in_keywords: Option<Vec<String>>,
    #[serde(default)]
    pub prices: Option<BTreeMap<PricingCategory, Price>>,
    #[serde(default, with = "optional_zone")]
    pub default_timezone: Option<crate::domain::zone::Zone>,
}

/// `PUT` changes only the fields it carries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChanges {
    pub name: Option<String>,
    pub phone_number_id: Option<String>,
    pub business_account_id: Option<String>,
    pub access_token: Option<Secret>,
    pub messaging_limit_tier: Option<Tier>,
    pub throughput_mps: Option<u32>,
    pub opt_out_keywords: Option<Vec<String>>,
    pub opt_in_keywords: Option<Vec<String>>,
    /// A new price table (an empty one removes it).
    pub prices: Option<BTreeMap<PricingCategory, Price>>,
    /// A new default zone; `null` removes it.
    #[serde(default, deserialize_with = "optional_zone::change")]
    pub default_timezone: Option<Option<crate::domain::zone::Zone>>,
}

fn digits_id(field: &str, v: &str) -> Result<String, Invalid> {
    let v = required_text(field, v, META_ID_CHARS)?;
    if !v.chars().all(|c| c.is_ascii_digit()) {
        return Err(Invalid(format!("{field} must contain only digits (Meta's numeric id)")));
    }
    Ok(v)
}

fn token(v: &Secret) -> Result<Secret, Invalid> {
    let v = required_text("access_token", v.expose(), ACCESS_TOKEN_CHARS)?;
    if v.chars().any(char::is_whitespace) {
        return Err(Invalid("access_token must not contain spaces".into()));
    }
    Ok(Secret::from(v))
}

fn throughput(v: u32) -> Result<u32, Invalid> {
    if v == 0 || v > MAX_THROUGHPUT_MPS {
        return Err(Invalid(format!("throughput_mps must be between 1 and {MAX_THROUGHPUT_MPS}")));
    }
    Ok(v)
}

impl NewAccount {
    /// Checks every field; returns the account and its access token.
    pub fn validate(self, id: Id, now: &Timestamp) -> Result<(Account, Secret), Invalid> {
        let (opt_out_keywords, opt_in_keywords) = keyword_lists(
            self.opt_out_keywords.unwrap_or_else(default_opt_out_keywords),
            self.opt_in_keywords.unwrap_or_else(default_opt_in_keywords),
        )?;
        let account = Account {
            id,
            name: required_text("name", &self.name, ACCOUNT_NAME_CHARS)?,
            phone_number_id: digits_id("phone_number_id", &self.phone_number_id)?,
            business_account_id: digits_id("business_account_id", &self.business_account_id)?,
            messaging_limit_tier: self.messaging_limit_tier,
            throughput_mps: throughput(self.throughput_mps.unwrap_or(DEFAULT_THROUGHPUT_MPS))?,
            opt_out_keywords,
            opt_in_keywords,
            prices: prices(self.prices.unwrap_or_default())?,
            default_timezone: self.default_timezone,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        Ok((account, token(&self.access_token)?))
    }
}

impl AccountChanges {
    /// Applies the changes; returns the new access token when one was given.
    pub fn apply(self, account: &mut Account, now: &Timestamp) -> Result<Option<Secret>, Invalid> {
        if let Some(v) = self.name {
            account.name = required_text("name", &v, ACCOUNT_NAME_CHARS)?;
        }
        if let Some(v) = self.phone_number_id {
            account.phone_number_id = digits_id("phone_number_id", &v)?;
        }
        if let Some(v) = self.business_account_id {
            account.business_account_id = digits_id("business_account_id", &v)?;
        }
        if let Some(v) = self.messaging_limit_tier {
            account.messaging_limit_tier = v;
        }
        if let Some(v) = self.throughput_mps {
            account.throughput_mps = throughput(v)?;
        }
        if self.opt_out_keywords.is_some() || self.opt_in_keywords.is_some() {
            let out = self.opt_out_keywords.unwrap_or_else(|| account.opt_out_keywords.clone());
            let r#in = self.opt_in_keywords.unwrap_or_else(|| account.opt_in_keywords.clone());
            (account.opt_out_keywords, account.opt_in_keywords) = keyword_lists(out, r#in)?;
        }
        if let Some(table) = self.prices {
            account.prices = prices(table)?;
        }
        if let Some(zone) = self.default_timezone {
            account.default_timezone = zone;
        }
        account.updated_at = now.clone();
        self.access_token.as_ref().map(token).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_account(tier: Tier, mps: Option<u32>) -> NewAccount {
        NewAccount {
            name: " Acme ".into(),
            phone_number_id: "1065".into(),
            business_account_id: "1022".into(),
            access_token: "EAAG".into(),
            messaging_limit_tier: tier,
            throughput_mps: mps,
            opt_out_keywords: None,
            opt_in_keywords: None,
            prices: None,
            default_timezone: None,
        }
    }

    #[test]
    fn prices_are_per_message_in_one_currency() {
        let (mut a, _) = new_account(Tier::Tier1K, None).validate("id".into(), &"t".into()).unwrap();
        assert!(a.prices.is_empty());
        let table = |v: serde_json::Value| AccountChanges {
            prices: Some(serde_json::from_value(v).unwrap()),
            ..Default::default()
        };
        table(serde_json::json!({"marketing": {"amount": 0.025, "currency": "usd"}, "utility": {"amount": 0.004, "currency": "USD"}}))
            .apply(&mut a, &"t2".into())
            .unwrap();
        assert_eq!(a.prices[&PricingCategory::Marketing], Price { amount: 0.025, currency: "USD".into() });
        let mixed = serde_json::json!({"marketing": {"amount": 0.02, "currency": "USD"}, "utility": {"amount": 0.01, "currency": "EUR"}});
        assert!(table(mixed).apply(&mut a, &"t3".into()).unwrap_err().0.contains("every price must be in"));
        // Kept to six decimal places: a vanishing amount is 0, not a number DynamoDB refuses.
        let tiny = serde_json::json!({"service": {"amount": 1e-200, "currency": "USD"}, "utility": {"amount": 0.12345678, "currency": "USD"}});
        table(tiny).apply(&mut a, &"t4".into()).unwrap();
        assert_eq!(
            (a.prices[&PricingCategory::Service].amount, a.prices[&PricingCategory::Utility].amount),
            (0.0, 0.123457)
        );
        let negative = serde_json::json!({"service": {"amount": -1, "currency": "USD"}});
        assert!(table(negative).apply(&mut a, &"t3".into()).unwrap_err().0.contains("prices.service.amount"));
        assert!(
            serde_json::from_value::<AccountChanges>(
                serde_json::json!({"prices": {"other": {"amount": 1, "currency": "USD"}}})
            )
            .is_err()
        );
        table(serde_json::json!({})).apply(&mut a, &"t4".into()).unwrap();
        assert!(a.prices.is_empty(), "an empty table removes it");
    }

    #[test]
    fn keywords_default_to_stop_and_start_match_trimmed_in_any_case_and_are_checked() {
        let (mut a, _) = new_account(Tier::Tier1K, None).validate("id".into(), &"t".into()).unwrap();
        assert_eq!(
            (a.keyword(" stop\n"), a.keyword("Unsubscribe"), a.keyword("START")),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!((a.keyword("stop please"), a.keyword("")), (None, None));
        let change = |out: &[&str], r#in: Option<&[&str]>| AccountChanges {
            opt_out_keywords: Some(out.iter().map(|s| s.to_string()).collect()),
            opt_in_keywords: r#in.map(|l| l.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        change(&["BAJA", " Alto "], None).apply(&mut a, &"t2".into()).unwrap();
        assert_eq!(
            (a.keyword("baja"), a.keyword("alto"), a.keyword("stop"), a.keyword("start")),
            (Some(true), Some(true), None, Some(false))
        );
        let both = change(&["STOP"], Some(&["stop"])).apply(&mut a, &"t3".into()).unwrap_err();
        assert!(both.0.contains("both"), "{}", both.0);
        let blank = change(&["  "], None).apply(&mut a, &"t3".into()).unwrap_err();
        assert!(blank.0.contains("opt_out_keywords"), "{}", blank.0);
        let many: Vec<String> = (0..21).map(|i| format!("K{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(change(&many, None).apply(&mut a, &"t3".into()).unwrap_err().0.contains("at most 20"));
    }

    #[test]
    fn the_default_timezone_is_an_iana_name_that_put_changes_or_removes() {
        let new: NewAccount = serde_json::from_value(serde_json::json!({"name": "A", "phone_number_id": "1",
            "business_account_id": "2", "access_token": "t", "messaging_limit_tier": "TIER_1K",
            "default_timezone": "America/Sao_Paulo"}))
        .unwrap();
        let (mut a, _) = new.validate("id".into(), &"t".into()).unwrap();
        assert_eq!(a.default_timezone.map(|z| z.name()), Some("America/Sao_Paulo"));
        let shown = serde_json::to_value(&a).unwrap();
        assert_eq!(shown["default_timezone"], "America/Sao_Paulo");
        assert_eq!(serde_json::from_value::<Account>(shown).unwrap(), a, "reads back");
        let change = |v: serde_json::Value| serde_json::from_value::<AccountChanges>(v);
        change(serde_json::json!({"name": "B"})).unwrap().apply(&mut a, &"t2".into()).unwrap();
        assert!(a.default_timezone.is_some(), "left out: unchanged");
        change(serde_json::json!({"default_timezone": null})).unwrap().apply(&mut a, &"t3".into()).unwrap();
        assert_eq!(a.default_timezone, None);
        assert!(serde_json::to_value(&a).unwrap().get("default_timezone").is_none());
        assert!(change(serde_json::json!({"default_timezone": "Brazil/Nowhere"})).is_err());
    }

    #[test]
    fn tiers_have_the_documented_rates() {
        let rates: Vec<_> =
            [Tier::Tier50, Tier::Tier250, Tier::Tier1K, Tier::Tier2K, Tier::Tier10K, Tier::Tier100K, Tier::Unlimited]
                .iter()
                .map(|t| t.rate())
                .collect();
        assert_eq!(rates, [Some(5), Some(5), Some(10), Some(20), Some(30), Some(80), None]);
        let t: Tier = serde_json::from_str("\"TIER_1K\"").unwrap();
        assert_eq!(t, Tier::Tier1K);
        assert!(serde_json::from_str::<Tier>("\"TIER_5\"").is_err());
    }

    #[test]
    fn throughput_defaults_to_80_and_caps_the_tier() {
        let (a, token) = new_account(Tier::Unlimited, None).validate("id".into(), &"t".into()).unwrap();
        assert_eq!((a.name.as_str(), a.throughput_mps, token.expose()), ("Acme", 80, "EAAG"));
        assert_eq!(a.send_rate(), 80);
        let (a, _) = new_account(Tier::Tier100K, Some(20)).validate("id".into(), &"t".into()).unwrap();
        assert_eq!(a.send_rate(), 20);
        let err = new_account(Tier::Tier1K, Some(1001)).validate("id".into(), &"t".into()).unwrap_err();
        assert!(err.0.contains("throughput_mps"));
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let new: NewAccount = serde_json::from_value(serde_json::json!({"name": "A", "phone_number_id": "1",
            "business_account_id": "2", "access_token": "EAAG-hidden", "messaging_limit_tier": "TIER_1K"}))
        .unwrap();
        assert!(!format!("{new:?}").contains("EAAG-hidden"));
        let changes = AccountChanges { access_token: Some("EAAG-hidden".into()), ..Default::default() };
        assert!(!format!("{changes:?}").contains("EAAG-hidden"));
        let (account, token) = new.validate("id".into(), &"t".into()).unwrap();
        assert_eq!(token.expose(), "EAAG-hidden");
        assert!(!serde_json::to_string(&account).unwrap().contains("EAAG-hidden"));
    }

    #[test]
    fn ids_must_be_numeric_and_changes_apply() {
        let mut bad = new_account(Tier::Tier1K, None);
        bad.phone_number_id = "abc".into();
        assert!(bad.validate("id".into(), &"t".into()).unwrap_err().0.contains("phone_number_id"));
        let (mut a, _) = new_account(Tier::Tier1K, None).validate("id".into(), &"t".into()).unwrap();
        let changes = AccountChanges {
            messaging_limit_tier: Some(Tier::Tier10K),
            access_token: Some("NEW".into()),
            ..Default::default()
        };
        assert_eq!(changes.apply(&mut a, &"t2".into()).unwrap().as_ref().map(Secret::expose), Some("NEW"));
        assert_eq!((a.messaging_limit_tier, a.updated_at.as_str()), (Tier::Tier10K, "t2"));
    }
}
