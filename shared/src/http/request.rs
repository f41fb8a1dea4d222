//! What a handler reads from a request: path ids, query values, and a JSON body, each
//! turned into a clear 4xx when it is wrong.

use std::collections::HashMap;

use bytes::Bytes;
use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::adapters::store::{Position, Start};
use crate::domain::id::Id;
use crate::domain::limits::{self, MAX_JSON_BODY_BYTES, MAX_NUMBERED_PAGE, MAX_PAGE, MAX_PAGE_SIZE};
use crate::error::{AppError, AppResult};

pub struct ApiRequest {
    params: Vec<(String, String)>,
    query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Shows the path ids and the names of the query values and headers only: the headers carry
/// the API key and bodies may carry an access token.
impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRequest")
            .field("params", &self.params)
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// `page` (from 1) and `limit` (1 to [`MAX_PAGE_SIZE`]) of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
}

impl ApiRequest {
    pub fn new(params: Vec<(String, String)>, query: Option<&str>, headers: HeaderMap, body: Bytes) -> Self {
        let query = form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
        ApiRequest { params, query, headers, body }
    }

    /// A path parameter such as `{id}`.
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// A query value; an empty one counts as absent.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The `{id}` of the path, naming a `kind` (`campaign`): 404 when it is not an id, as it
    /// names nothing.
    pub fn id(&self, kind: &str) -> AppResult<Id> {
        let raw = self.param("id");
        Id::parse(raw).ok_or_else(|| AppError::not_found(format!("{kind} {raw} not found")))
    }

    /// An optional id in the query (`account_id=…`): 400 unless it is an id.
    pub fn query_id(&self, name: &str) -> AppResult<Option<Id>> {
        let Some(v) = self.query(name) else { return Ok(None) };
        let kind = name.trim_end_matches("_id");
        let id = Id::parse(v)
            .ok_or_else(|| AppError::bad_request(format!("{name} must be an {kind} id (a UUID), got '{v}'")))?;
        Ok(Some(id))
    }

    /// `page` and `limit`, with the route's default limit.
    pub fn pagination(&self, default_limit: u32) -> AppResult<Pagination> {
        let number = |name: &str, default: u32, max: u32| -> AppResult<u32> {
            match self.query(name) {
                None => Ok(default),
                Some(v) => v.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    AppError::bad_request(format!("{name} must be a whole number from 1 to {max} (got '{v}')"))
                }),
            }
        };
        Ok(Pagination { page: number("page", 1, MAX_PAGE)?, limit: number("limit", default_limit, MAX_PAGE_SIZE)? })
    }

    /// Where a listing that pages by cursor starts: `cursor` (a `next_cursor` it answered) or
    /// `page`, up to [`MAX_NUMBERED_PAGE`]; and `limit`.
    pub fn listing(&self, default_limit: u32) -> AppResult<(Pagination, Start)> {
        let p = self.pagination(default_limit)?;
        if self.query.get("cursor").is_some_and(String::is_empty) {
            return Err(AppError::bad_request(
                "cursor is empty: pass the next_cursor of the page before, or no cursor",
            ));
        }
        let Some(cursor) = self.query("cursor") else {
            if p.page > MAX_NUMBERED_PAGE {
                return Err(AppError::bad_request(format!(
                    "page must be a whole number from 1 to {MAX_NUMBERED_PAGE} here (got '{}'): deeper, follow \
                     next_cursor from an earlier page (cursor=…)",
                    p.page
                )));
            }
            return Ok((p, Start::Page(p.page)));
        };
        if self.query("page").is_some() {
            return Err(AppError::bad_request("give page or cursor, not both"));
        }
        let at = Position::decode(cursor).ok_or_else(|| {
            AppError::bad_request(format!("cursor '{cursor}' is not one this API answered as next_cursor"))
        })?;
        Ok((p, Start::At(at)))
    }

    /// A query value that must be one of a fixed set (a status), parsed by `parse`.
    pub fn query_enum<T>(&self, name: &str, parse: fn(&str) -> Option<T>, allowed: &str) -> AppResult<Option<T>> {
        self.query(name)
            .map(|v| {
                parse(v).ok_or_else(|| AppError::bad_request(format!("{name} must be one of {allowed} (got '{v}')")))
            })
            .transpose()
    }

    /// The media type of the body, lowercased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        let v = self.headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
        Some(v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
    }

    /// An optional body: no body at all is `T::default()`; anything else must be JSON of type `T`
    /// (a body of only spaces or tabs is malformed, not absent).
    pub fn optional_json<T: DeserializeOwned + Default>(&self) -> AppResult<T> {
        if self.body.is_empty() { Ok(T::default()) } else { self.json() }
    }

    /// The body of a create or an update as JSON of type `T`. Errors name the field: 400 for
    /// malformed JSON and wrong types, 422 for a missing or unknown field or a value outside the
    /// allowed set, 413 for a body over [`MAX_JSON_BODY_BYTES`].
    pub fn json<T: DeserializeOwned>(&self) -> AppResult<T> {
        if let Some(ct) = self.content_type()
            && ct != "application/json"
            && !ct.ends_with("+json")
        {
            return Err(AppError::unsupported_media(format!(
                "Content-Type {ct} is not supported here; send application/json"
            )));
        }
        if self.body.len() > MAX_JSON_BODY_BYTES {
            return Err(AppError::too_large(format!(
                "the request body has {} bytes; the limit for this request is {MAX_JSON_BODY_BYTES} bytes (256 KB)",
                self.body.len()
            )));
        }
        parse_json(&self.body)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> AppResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request("malformed JSON: the body is empty or only whitespace"));
    }
    limits::check_depth(body).map_err(AppError::invalid)?;
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde's text ends with " at line 1 column 20"; the field path says more.
        let text = inner.to_string();
        let text = text.split(" at line ").next().unwrap_or(&text).to_string();
        if inner.is_syntax() || inner.is_eof() {
            // Well-formed JSON that serde reads as a syntax error: an object or array where a
            // name (an enum) is expected.
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                let at = if path == "." { "body" } else { path.as_str() };
                return AppError::bad_request(format!("{at}: invalid type: a value of another type is expected"));
            }
            return AppError::bad_request(format!("malformed JSON: {inner}"));
        }
        if let Some(field) = text.strip_prefix("missing field `").and_then(|t| t.strip_suffix('`')) {
            let at = if path == "." { String::new() } else { format!("{path}.") };
            return AppError::invalid(format!("{at}{field} is required"));
        }
        if let Some(field) = text.strip_prefix("unknown field `").and_then(|t| t.split('`').next()) {
            let at = if path == "." { String::new() } else { format!(" in {path}") };
            return AppError::invalid(format!("unknown field '{field}'{at}: it is not part of this request"));
        }
        let at = if path == "." { "body".to_string() } else { path };
        if text.starts_with("invalid type") || text.starts_with("invalid length") || text.starts_with("invalid value") {
            AppError::bad_request(format!("{at}: {text}"))
        } else {
            AppError::invalid(format!("{at}: {text}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::NewAccount;
    use crate::error::ErrorKind;

    #[test]
    fn debug_output_shows_no_header_value_or_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "wak_secret".parse().unwrap());
        let body = Bytes::from_static(br#"{"access_token":"EAAG-secret"}"#);
        let shown = format!("{:?}", ApiRequest::new(vec![], Some("a=1"), headers, body));
        assert!(!shown.contains("wak_secret") && !shown.contains("EAAG-secret"), "{shown}");
        assert!(shown.contains("x-api-key"), "{shown}");
    }

    fn req(query: &str) -> ApiRequest {
        ApiRequest::new(vec![], Some(query), HeaderMap::new(), Bytes::new())
    }

    #[test]
    fn pagination_defaults_and_bounds() {
        assert_eq!(req("").pagination(20).unwrap(), Pagination { page: 1, limit: 20 });
        assert_eq!(req("page=3&limit=100").pagination(20).unwrap(), Pagination { page: 3, limit: 100 });
        for bad in ["page=0", "limit=0", "limit=101", "page=abc", "limit=-1", "page=1.5"] {
            let e = req(bad).pagination(20).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad}");
            assert!(e.message.starts_with(&bad[..4]), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn an_optional_body_is_absent_only_when_empty() {
        #[derive(Debug, Default, PartialEq, serde::Deserialize)]
        struct Opt {
            #[serde(default)]
            n: u8,
        }
        let with = |body: &'static [u8]| ApiRequest::new(vec![], None, HeaderMap::new(), Bytes::from_static(body));
        assert_eq!(with(b"").optional_json::<Opt>().unwrap(), Opt::default());
        assert_eq!(with(br#"{"n":3}"#).optional_json::<Opt>().unwrap(), Opt { n: 3 });
        for blank in [&b"\t"[..], b" ", b"\r\n"] {
            let e = with(blank).optional_json::<Opt>().unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{blank:?}");
            assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<NewAccount>(b"{").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.starts_with("malformed JSON"));
        let e = parse_json::<NewAccount>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(
            (e.kind, e.message.starts_with("name: invalid type")),
            (ErrorKind::BadRequest, true),
            "{}",
            e.message
        );
        let e = parse_json::<NewAccount>(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Invalid, "phone_number_id is required"));
        let e = parse_json::<NewAccount>(br#"{"name":"a","messaging_limit_tier":{}}"#).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::BadRequest, "messaging_limit_tier: invalid type: a value of another type is expected")
        );
        let e = parse_json::<NewAccount>(br#"{"nme":"a"}"#).unwrap_err();
        assert!(e.message.contains("unknown field 'nme'"), "{}", e.message);
        let e = parse_json::<NewAccount>(
            br#"{"name":"a","phone_number_id":"1","business_account_id":"2","access_token":"t","messaging_limit_tier":"TIER_5"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.starts_with("messaging_limit_tier: unknown variant"), "{}", e.message);
    }

    #[test]
    fn send_window_errors_name_the_field() {
        use crate::domain::campaign::CampaignChanges;
        let invalid = |body: &str| {
            let e = parse_json::<CampaignChanges>(body.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{body}: {}", e.message);
            e.message
        };
        let m = invalid(r#"{"send_window": {"start": "9am", "end": "20:00", "timezone": "UTC"}}"#);
        assert!(m.starts_with("send_window.start: '9am' is not a time of day as HH:MM"), "{m}");
        let m = invalid(r#"{"send_window": {"start": "09:00", "end": "20:00", "timezone": "Moon/Base"}}"#);
        assert!(m.starts_with("send_window.timezone: 'Moon/Base' is not an IANA time zone"), "{m}");
        let m = invalid(
            r#"{"send_window": {"start": "09:00", "end": "20:00", "days": ["mon", "mon"], "timezone": "UTC"}}"#,
        );
        assert!(m.starts_with("send_window.days: 'mon' is named twice"), "{m}");
        let m = invalid(r#"{"send_window": {"start": "09:00", "end": "09:00", "timezone": "UTC"}}"#);
        assert!(m.starts_with("send_window: end must differ from start"), "{m}");
        let m = invalid(r#"{"send_window": {"start": "09:00", "end": "20:00"}}"#);
        assert_eq!(m, "send_window.timezone is required");
        let e = parse_json::<CampaignChanges>(br#"{"send_window": "09:00-20:00"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "a wrong type, as for any field");
        assert!(
            e.message.starts_with("send_window: invalid type: string \"09:00-20:00\", expected a send window"),
            "{}",
            e.message
        );
        let e = parse_json::<crate::domain::account::AccountChanges>(br#"{"default_timezone": "Europe/Berln"}"#)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Invalid, "default_timezone: 'Europe/Berln' is not an IANA time zone (such as Europe/Berlin)")
        );
        let clear = parse_json::<CampaignChanges>(br#"{"send_window": null}"#).unwrap();
        assert_eq!(clear.send_window, Some(None));
    }
}
