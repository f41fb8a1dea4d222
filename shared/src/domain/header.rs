//! A campaign's values for a template header that is not text: a medium (`header_media`, for
//! IMAGE, VIDEO and DOCUMENT headers) or a place (`header_location`, for LOCATION headers).
//! Their own rules ([`HeaderMedia::check`], [`HeaderLocation::check`]), the rules against the
//! template ([`check_against_template`]) and Meta's header parameter ([`media_parameter`],
//! [`location_parameter`]).
//!
//! A per-recipient medium: `variable_mapping` maps the key [`MEDIA_KEY`] (`header.media`) to a
//! recipient field that holds each recipient's link. `header_media` is then optional; when given
//! it carries no link or id (its `type` must still match the header, and a document may name its
//! `filename`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::limits::{HEADER_LOCATION_TEXT_CHARS, MEDIA_FILENAME_CHARS, MEDIA_ID_CHARS, MEDIA_LINK_CHARS};
use super::template::{HeaderFormat, Template};
use crate::error::Invalid;

/// The `variable_mapping` key of a per-recipient media link.
pub const MEDIA_KEY: &str = "header.media";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Video,
    Document,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::Document => "document",
        }
    }

    /// The media type a header format takes, if it takes one.
    pub fn of(format: HeaderFormat) -> Option<MediaType> {
        match format {
            HeaderFormat::Image => Some(MediaType::Image),
            HeaderFormat::Video => Some(MediaType::Video),
            HeaderFormat::Document => Some(MediaType::Document),
            HeaderFormat::Text | HeaderFormat::Location => None,
        }
    }
}

/// The medium of an IMAGE, VIDEO or DOCUMENT header: a public https `link` or the `id` of a
/// medium uploaded to Meta (exactly one, unless `variable_mapping` maps `header.media`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMedia {
    #[serde(rename = "type")]
    pub kind: MediaType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name a document is shown with (documents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// The place of a LOCATION header. Coordinates are kept to 7 decimal places (about a
/// centimetre), so that every one is a number DynamoDB stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderLocation {
    #[serde(deserialize_with = "coordinate")]
    pub latitude: f64,
    #[serde(deserialize_with = "coordinate")]
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

fn coordinate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = <f64 as serde::Deserialize>::deserialize(d)?;
    Ok((v * 1e7).round() / 1e7)
}

/// An https URL with a host, at most [`MEDIA_LINK_CHARS`] characters, without spaces.
pub fn is_https_link(link: &str) -> bool {
    let Some(rest) = link.strip_prefix("https://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && link.chars().count() <= MEDIA_LINK_CHARS && !link.chars().any(char::is_whitespace)
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<(), Invalid> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Invalid(format!("{field} must not be empty"))),
        Some(v) if v.chars().count() > max => Err(Invalid(format!("{field} must be at most {max} characters"))),
        _ => Ok(()),
    }
}

impl HeaderMedia {
    /// Its own rules, before it is compared with a template.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.link.is_some() && self.id.is_some() {
            return Err(Invalid("header_media takes either a link or an id, not both".into()));
        }
        if let Some(link) = &self.link
            && !is_https_link(link)
        {
            return Err(Invalid(format!(
                "header_media.link must be an https URL (https://…, at most {MEDIA_LINK_CHARS} characters, no spaces)"
            )));
        }
        if let Some(id) = &self.id
            && (id.is_empty() || id.chars().count() > MEDIA_ID_CHARS || id.chars().any(char::is_whitespace))
        {
            return Err(Invalid(format!(
                "header_media.id must be a media id (1 to {MEDIA_ID_CHARS} characters, no spaces)"
            )));
        }
        if self.filename.is_some() && self.kind != MediaType::Document {
            return Err(Invalid(format!("header_media.filename is only for documents, not {}", self.kind.as_str())));
        }
        optional_text("header_media.filename", self.filename.as_deref(), MEDIA_FILENAME_CHARS)
    }

    fn has_source(&self) -> bool {
        self.link.is_some() || self.id.is_some()
    }
}

impl HeaderLocation {
    /// Its own rules: coordinates in range, name and address not blank and bounded.
    pub fn check(&self) -> Result<(), Invalid> {
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(Invalid("header_location.latitude must be between -90 and 90".into()));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(Invalid("header_location.longitude must be between -180 and 180".into()));
        }
        optional_text("header_location.name", self.name.as_deref(), HEADER_LOCATION_TEXT_CHARS)?;
        optional_text("header_location.address", self.address.as_deref(), HEADER_LOCATION_TEXT_CHARS)
    }
}

/// The header values against the campaign's template: `header_media` exactly when the header is
/// an IMAGE, VIDEO or DOCUMENT (of that type; a link or id unless `variable_mapping` maps
/// `header.media`), `header_location` exactly when it is a LOCATION.
pub fn check_against_template(
    template: &Template,
    mapping: &BTreeMap<String, String>,
    media: Option<&HeaderMedia>,
    location: Option<&HeaderLocation>,
) -> Result<(), Invalid> {
    let format = template.header_format();
    let name = &template.name;
    match (format.and_then(MediaType::of), media) {
        (Some(_), None) if mapping.contains_key(MEDIA_KEY) => {}
        (Some(_), None) => {
            let label = format.map_or("", HeaderFormat::label);
            return Err(Invalid(format!(
                "header_media is required: template {name} has an {label} header \
                 (give a link or an id, or map {MEDIA_KEY} in variable_mapping to a recipient field)"
            )));
        }
        (Some(expected), Some(m)) => {
            if m.kind != expected {
                return Err(Invalid(format!(
                    "header_media.type must be {}: template {name} has an {} header (got {})",
                    expected.as_str(),
                    format.map_or("", HeaderFormat::label),
                    m.kind.as_str()
                )));
            }
            match (m.has_source(), mapping.contains_key(MEDIA_KEY)) {
                (true, true) => {
                    return Err(Invalid(format!(
                        "header_media gives a link or an id and variable_mapping maps {MEDIA_KEY}: use one of them"
                    )));
                }
                (false, false) => {
                    return Err(Invalid(format!(
                        "header_media needs a link or an id (or map {MEDIA_KEY} in variable_mapping to a recipient field)"
                    )));
                }
                _ => {}
            }
        }
        (None, Some(_)) => {
            return Err(Invalid(format!(
                "header_media is not allowed: template {name} has no IMAGE, VIDEO or DOCUMENT header"
            )));
        }
        (None, None) => {}
    }
    match (format == Some(HeaderFormat::Location), location) {
        (true, None) => Err(Invalid(format!("header_location is required: template {name} has a LOCATION header"))),
        (false, Some(_)) => {
            Err(Invalid(format!("header_location is not allowed: template {name} has no LOCATION header")))
        }
        _ => Ok(()),
    }
}

/// Meta's media parameter of a header: `{"type": "image", "image": {"link": …}}` (or `id`, and
/// `filename` for a document). `link` is a recipient's own link, which wins over the campaign's.
pub fn media_parameter(kind: MediaType, media: Option<&HeaderMedia>, link: Option<&str>) -> Option<Value> {
    let mut object = serde_json::Map::new();
    match (link, media) {
        (Some(link), _) => {
            object.insert("link".into(), json!(link));
        }
        (None, Some(HeaderMedia { link: Some(link), .. })) => {
            object.insert("link".into(), json!(link));
        }
        (None, Some(HeaderMedia { id: Some(id), .. })) => {
            object.insert("id".into(), json!(id));
        }
        _ => return None,
    }
    if kind == MediaType::Document
        && let Some(filename) = media.and_then(|m| m.filename.as_deref())
    {
        object.insert("filename".into(), json!(filename));
    }
    Some(json!({ "type": kind.as_str(), kind.as_str(): object }))
}

/// Meta's location parameter of a header.
pub fn location_parameter(location: &HeaderLocation) -> Value {
    let mut place = json!({ "latitude": location.latitude, "longitude": location.longitude });
    if let Some(name) = &location.name {
        place["name"] = json!(name);
    }
    if let Some(address) = &location.address {
        place["address"] = json!(address);
    }
    json!({ "type": "location", "location": place })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::NewTemplate;

    fn template(header: Value) -> Template {
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": "0b6f4c6e-0000-4000-8000-000000000001", "name": "promo", "language": "en",
            "category": "MARKETING", "status": "APPROVED",
            "components": [header, {"type": "BODY", "text": "Hi {{1}}"}]
        }))
        .unwrap();
        t.validate("t".into(), &"now".into()).unwrap()
    }

    fn media(v: Value) -> HeaderMedia {
        serde_json::from_value(v).unwrap()
    }

    fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn media_takes_one_https_link_or_id_and_a_filename_only_for_documents() {
        assert!(media(json!({"type": "image", "link": "https://cdn.example/a.png"})).check().is_ok());
        assert!(media(json!({"type": "video", "id": "1234567890"})).check().is_ok());
        let both = media(json!({"type": "image", "link": "https://x.example/a", "id": "1"}));
        assert!(both.check().unwrap_err().0.contains("either a link or an id"));
        for bad in ["http://x.example/a.png", "https://", "https:///a", "ftp://x", "https://x.example/a b"] {
            let e = media(json!({"type": "image", "link": bad})).check().unwrap_err().0;
            assert!(e.starts_with("header_media.link must be an https URL"), "{bad}: {e}");
        }
        let e = media(json!({"type": "image", "link": "https://x.example/a", "filename": "a.png"})).check();
        assert!(e.unwrap_err().0.contains("filename is only for documents, not image"));
        let doc = media(json!({"type": "document", "id": "9", "filename": "menu.pdf"}));
        assert!(doc.check().is_ok());
        assert!(serde_json::from_value::<HeaderMedia>(json!({"type": "gif", "id": "1"})).is_err());
        assert!(serde_json::from_value::<HeaderMedia>(json!({"type": "image", "url": "https://x"})).is_err());
    }

    #[test]
    fn location_coordinates_are_in_range() {
        let read: HeaderLocation =
            serde_json::from_value(json!({"latitude": 1e-200, "longitude": 13.40499999})).unwrap();
        assert_eq!((read.latitude, read.longitude), (0.0, 13.405), "kept to 7 decimal places");
        let place = |lat: f64, lon: f64| HeaderLocation { latitude: lat, longitude: lon, name: None, address: None };
        assert!(place(90.0, -180.0).check().is_ok());
        assert!(place(90.5, 0.0).check().unwrap_err().0.contains("latitude"));
        assert!(place(0.0, 180.1).check().unwrap_err().0.contains("longitude"));
        let blank = HeaderLocation { name: Some(" ".into()), ..place(1.0, 2.0) };
        assert!(blank.check().unwrap_err().0.contains("header_location.name must not be empty"));
    }

    #[test]
    fn header_values_follow_the_templates_header() {
        let image = template(json!({"type": "HEADER", "format": "IMAGE"}));
        let none = BTreeMap::new();
        let link = media(json!({"type": "image", "link": "https://x.example/a.png"}));
        assert!(check_against_template(&image, &none, Some(&link), None).is_ok());
        let e = check_against_template(&image, &none, None, None).unwrap_err().0;
        assert!(e.starts_with("header_media is required: template promo has an IMAGE header"), "{e}");
        let video = media(json!({"type": "video", "id": "1"}));
        let e = check_against_template(&image, &none, Some(&video), None).unwrap_err().0;
        assert!(e.starts_with("header_media.type must be image"), "{e}");
        // A per-recipient link: header_media optional, and then without a link or id.
        let mapped = mapping(&[("header.media", "photo")]);
        assert!(check_against_template(&image, &mapped, None, None).is_ok());
        let typed = media(json!({"type": "image"}));
        assert!(check_against_template(&image, &mapped, Some(&typed), None).is_ok());
        assert!(check_against_template(&image, &mapped, Some(&link), None).unwrap_err().0.contains("use one of them"));
        assert!(check_against_template(&image, &none, Some(&typed), None).unwrap_err().0.contains("needs a link"));
        let place = HeaderLocation { latitude: 1.0, longitude: 2.0, name: None, address: None };
        let e = check_against_template(&image, &none, Some(&link), Some(&place)).unwrap_err().0;
        assert!(e.starts_with("header_location is not allowed"), "{e}");

        let text = template(json!({"type": "HEADER", "format": "TEXT", "text": "Hello"}));
        let e = check_against_template(&text, &none, Some(&link), None).unwrap_err().0;
        assert!(e.starts_with("header_media is not allowed: template promo has no IMAGE"), "{e}");
        assert!(check_against_template(&text, &none, None, None).is_ok());

        let location = template(json!({"type": "HEADER", "format": "LOCATION"}));
        assert!(check_against_template(&location, &none, None, Some(&place)).is_ok());
        let e = check_against_template(&location, &none, None, None).unwrap_err().0;
        assert!(e.starts_with("header_location is required: template promo has a LOCATION header"), "{e}");
        assert!(check_against_template(&location, &none, Some(&link), Some(&place)).is_err());
    }

    #[test]
    fn parameters_in_metas_shape() {
        let link = media(json!({"type": "image", "link": "https://x.example/a.png"}));
        assert_eq!(
            media_parameter(MediaType::Image, Some(&link), None),
            Some(json!({"type": "image", "image": {"link": "https://x.example/a.png"}}))
        );
        let doc = media(json!({"type": "document", "id": "42", "filename": "menu.pdf"}));
        assert_eq!(
            media_parameter(MediaType::Document, Some(&doc), None),
            Some(json!({"type": "document", "document": {"id": "42", "filename": "menu.pdf"}}))
        );
        assert_eq!(
            media_parameter(MediaType::Video, None, Some("https://x.example/v.mp4")),
            Some(json!({"type": "video", "video": {"link": "https://x.example/v.mp4"}}))
        );
        assert_eq!(media_parameter(MediaType::Video, None, None), None);
        let place = HeaderLocation { latitude: 52.52, longitude: 13.405, name: Some("Shop".into()), address: None };
        assert_eq!(
            location_parameter(&place),
            json!({"type": "location", "location": {"latitude": 52.52, "longitude": 13.405, "name": "Shop"}})
        );
    }
}
