//! Phone numbers to E.164 with the `phonenumber` crate (Google's libphonenumber metadata).

use phonenumber::Mode;
use phonenumber::country::Id;

use super::text::text_newtype;

text_newtype!(
    /// A phone number in E.164 (`+14155550123`): made by [`PhoneParser::normalize`] from what a
    /// user wrote, or by [`Phone::e164`] from what Meta or this service wrote.
    Phone
);

impl Phone {
    /// `value` if it is already in E.164: `+` and 6 to 15 digits (Meta's `wa_id` gets its `+`
    /// from [`Phone::from_wa_id`]).
    pub fn e164(value: &str) -> Option<Phone> {
        let digits = value.strip_prefix('+')?;
        let ok = (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Phone(value.to_string()))
    }

    /// Meta's `wa_id` / `from` (digits without the `+`).
    pub fn from_wa_id(digits: &str) -> Option<Phone> {
        Phone::e164(&format!("+{digits}"))
    }
}

/// Reads numbers written in any common way: `+1 415-555-0123`, `0044 20 7946 0958`, or a national
/// number such as `(415) 555-0123`, read in the configured default region.
#[derive(Debug, Clone, Copy)]
pub struct PhoneParser {
    region: Option<Id>,
}

impl PhoneParser {
    /// `region` is an ISO 3166 code (`US`, `DE`); an unknown one means only `+`-numbers parse.
    pub fn new(region: &str) -> Self {
        PhoneParser { region: region.trim().to_uppercase().parse::<Id>().ok() }
    }

    pub fn region_known(&self) -> bool {
        self.region.is_some()
    }

    /// The number in E.164 (`+14155550123`), or why it can't be used.
    pub fn normalize(&self, raw: &str) -> Result<Phone, &'static str> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("phone number is empty");
        }
        if raw.chars().count() > super::limits::PHONE_CHARS {
            return Err("phone number is too long");
        }
        let number = phonenumber::parse(self.region, raw).map_err(|_| "phone number cannot be read")?;
        if !phonenumber::is_valid(&number) {
            return Err("phone number is not a valid number");
        }
        Ok(Phone(number.format().mode(Mode::E164).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_to_e164() {
        let us = PhoneParser::new("us");
        assert!(us.region_known());
        assert_eq!(us.normalize("+1 415-555-0123").unwrap(), "+14155550123");
        assert_eq!(us.normalize("(415) 555-0123").unwrap(), "+14155550123");
        assert_eq!(us.normalize("14155550123").unwrap(), "+14155550123");
        let de = PhoneParser::new("DE");
        assert_eq!(de.normalize("030 1234567").unwrap(), "+49301234567");
        assert_eq!(de.normalize("+44 20 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn refuses_unusable_numbers() {
        let us = PhoneParser::new("US");
        assert!(us.normalize("").is_err());
        assert!(us.normalize("hello").is_err());
        assert!(us.normalize("+0987654321").is_err());
        assert!(us.normalize("123").is_err());
        let none = PhoneParser::new("XX");
        assert!(!none.region_known());
        assert!(none.normalize("4155550123").is_err());
        assert_eq!(none.normalize("+14155550123").unwrap(), "+14155550123");
    }

    #[test]
    fn e164_is_plus_and_digits() {
        assert_eq!(Phone::e164("+14155550123").unwrap(), "+14155550123");
        assert_eq!(Phone::from_wa_id("4915112345678").unwrap(), "+4915112345678");
        for bad in ["14155550123", "+1415555012a", "+", "+12345", "+1234567890123456", ""] {
            assert!(Phone::e164(bad).is_none(), "{bad}");
        }
    }
}
