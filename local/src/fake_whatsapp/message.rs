//! The body of a send and the checks Meta makes on it: phone numbers ([`normalize_number`]), a
//! template message parsed field by field into what the template checks need (code 100 for an
//! invalid field, 131008 for a missing one), and the registered templates ([`TemplateSpec`])
//! that a send's parameters are counted against (132000) and whose media or location header
//! must get a parameter of its type (132012).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use shared::domain::template::HeaderFormat;

use super::errors::MetaError;

/// `+` and the digits of a number given as 7–15 digits after an optional `+`, else `None`.
pub fn normalize_number(number: &str) -> Option<String> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    let valid = (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| format!("+{digits}"))
}

/// The WhatsApp id of a number given as `+` and digits: its digits.
pub(super) fn wa_id(number: &str) -> &str {
    number.trim_start_matches('+')
}

/// A template the fake knows: sends that use it (same name and language) must carry exactly
/// these many parameters per component. `buttons` are the indexes of the URL buttons that take a
/// parameter. With `named`, header and body text parameters must carry `parameter_name`.
/// With a `header_format` of IMAGE, VIDEO, DOCUMENT or LOCATION, the header must carry exactly
/// one parameter of that type (`header_params` is then not used), else 132012.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub header_params: usize,
    #[serde(default)]
    pub body_params: usize,
    #[serde(default)]
    pub buttons: Vec<u32>,
    #[serde(default)]
    pub named: bool,
    /// The header's format; absent (or TEXT): a text header, counted by `header_params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_format: Option<HeaderFormat>,
}

impl TemplateSpec {
    /// A positional template with `body_params` body parameters and nothing else.
    pub fn new(name: impl Into<String>, language: impl Into<String>, body_params: usize) -> TemplateSpec {
        TemplateSpec {
            name: name.into(),
            language: language.into(),
            header_params: 0,
            body_params,
            buttons: Vec::new(),
            named: false,
            header_format: None,
        }
    }

    /// The same template with a header of this format (IMAGE, VIDEO, DOCUMENT, LOCATION).
    pub fn with_header(mut self, format: HeaderFormat) -> TemplateSpec {
        self.header_format = Some(format);
        self
    }

    /// The parameter type its header takes, when it is not a text header.
    fn header_parameter(&self) -> Option<&'static str> {
        match self.header_format? {
            HeaderFormat::Text => None,
            HeaderFormat::Image => Some("image"),
            HeaderFormat::Video => Some("video"),
            HeaderFormat::Document => Some("document"),
            HeaderFormat::Location => Some("location"),
        }
    }
}

/// A well-formed template send, reduced to what the template checks need.
pub(super) struct Message {
    /// `to` as sent.
    pub(super) input: String,
    /// `to` as `+` and digits.
    pub(super) to: String,
    pub(super) name: String,
    pub(super) language: String,
    components: Vec<Component>,
}

struct Component {
    path: String,
    kind: Kind,
    params: usize,
    /// The `type` of each parameter, in order.
    types: Vec<String>,
    /// The first text parameter without `parameter_name`, by its path.
    unnamed_text: Option<String>,
}

#[derive(PartialEq)]
enum Kind {
    Header,
    Body,
    Button { sub_type: String, index: u32 },
}

impl Kind {
    /// Whether two components fill the same place of a template (a button by its index).
    fn same_slot(&self, other: &Kind) -> bool {
        match (self, other) {
            (Kind::Button { index: a, .. }, Kind::Button { index: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }

    /// The index of a URL button.
    fn url_button(&self) -> Option<u32> {
        match self {
            Kind::Button { sub_type, index } if sub_type == "url" => Some(*index),
            _ => None,
        }
    }
}

// ---- parsing ----

/// A field's value, unless it is absent or `null`.
fn given<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|value| !value.is_null())
}

/// A required field (`path` is the prefix of its name): absent or `null` → 131008.
fn required<'a>(object: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a Value, MetaError> {
    given(object, field).ok_or_else(|| MetaError::missing(format!("{path}{field} is required")))
}

/// A required string field: absent or blank → 131008, not a string → 100.
fn required_str<'a>(object: &'a Map<String, Value>, field: &str, path: &str) -> Result<&'a str, MetaError> {
    match required(object, field, path)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::String(_) => Err(MetaError::missing(format!("{path}{field} is empty"))),
        _ => Err(MetaError::invalid(format!("{path}{field} must be a string"))),
    }
}

/// A required object field: absent → 131008, not an object → 100.
fn required_object<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, MetaError> {
    match required(object, field, path)? {
        Value::Object(o) => Ok(o),
        _ => Err(MetaError::invalid(format!("{path}{field} must be an object"))),
    }
}

/// A send's body, checked in the order Meta checks it.
pub(super) fn parse_message(json: &Value) -> Result<Message, MetaError> {
    let Some(body) = json.as_object() else {
        return Err(MetaError::invalid("the body must be a JSON object"));
    };
    if required_str(body, "messaging_product", "")? != "whatsapp" {
        return Err(MetaError::invalid("messaging_product must be \"whatsapp\""));
    }
    match body.get("recipient_type") {
        None => {}
        Some(Value::String(s)) if s == "individual" => {}
        Some(_) => return Err(MetaError::invalid("recipient_type must be \"individual\"")),
    }
    let Value::String(input) = required(body, "to", "")? else {
        return Err(MetaError::invalid("to must be a string"));
    };
    let Some(to) = normalize_number(input) else {
        return Err(MetaError::invalid(format!(
            "to {input:?} is not a phone number: expected 7-15 digits after an optional +"
        )));
    };
    let kind = required_str(body, "type", "")?;
    if kind != "template" {
        return Err(MetaError::invalid(format!(
            "type {kind:?} is not supported: this fake only sends \"template\" messages"
        )));
    }
    match given(body, "biz_opaque_callback_data") {
        None => {}
        Some(Value::String(s)) if s.chars().count() <= 512 => {}
        Some(Value::String(_)) => {
            return Err(MetaError::invalid("biz_opaque_callback_data is longer than 512 characters"));
        }
        Some(_) => return Err(MetaError::invalid("biz_opaque_callback_data must be a string")),
    }
    let template = required_object(body, "template", "")?;
    let name = required_str(template, "name", "template.")?.to_owned();
    let Value::Object(language) = required(template, "language", "template.")? else {
        return Err(MetaError::invalid("template.language must be an object with a code"));
    };
    let language = required_str(language, "code", "template.language.")?.to_owned();
    let components = parse_components(template)?;
    Ok(Message { input: input.clone(), to, name, language, components })
}

/// `template.components`, none when absent; a component may not fill a place twice.
fn parse_components(template: &Map<String, Value>) -> Result<Vec<Component>, MetaError> {
    let components = match given(template, "components") {
        None => Vec::new(),
        Some(Value::Array(list)) => {
            list.iter().enumerate().map(|(i, c)| parse_component(c, i)).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(MetaError::invalid("template.components must be an array")),
    };
    for (i, c) in components.iter().enumerate() {
        if components[..i].iter().any(|earlier| earlier.kind.same_slot(&c.kind)) {
            return Err(MetaError::invalid(format!("{} repeats an earlier component", c.path)));
        }
    }
    Ok(components)
}

fn parse_component(value: &Value, i: usize) -> Result<Component, MetaError> {
    let path = format!("template.components[{i}]");
    let Some(component) = value.as_object() else {
        return Err(MetaError::invalid(format!("{path} must be an object")));
    };
    let prefix = format!("{path}.");
    let kind = parse_kind(component, &path)?;
    let Value::Array(params) = required(component, "parameters", &prefix)? else {
        return Err(MetaError::invalid(format!("{path}.parameters must be an array")));
    };
    let allowed: &[&str] = match kind {
        Kind::Header => &["text", "image", "document", "video", "location"],
        Kind::Body => &["text", "currency", "date_time"],
        Kind::Button { .. } => &["text", "payload", "coupon_code", "action"],
    };
    let mut unnamed_text = None;
    let mut types = Vec::new();
    for (j, param) in params.iter().enumerate() {
        let param_path = format!("{path}.parameters[{j}]");
        let (kind, named) = parse_parameter(param, &param_path, allowed)?;
        types.push(kind);
        if named == Some(false) && unnamed_text.is_none() {
            unnamed_text = Some(param_path);
        }
    }
    Ok(Component { path, kind, params: params.len(), types, unnamed_text })
}

/// A component's `type`, and for a button its `sub_type` and `index`.
fn parse_kind(component: &Map<String, Value>, path: &str) -> Result<Kind, MetaError> {
    let prefix = format!("{path}.");
    match required_str(component, "type", &prefix)? {
        "header" => Ok(Kind::Header),
        "body" => Ok(Kind::Body),
        "button" => {
            let sub_type = required_str(component, "sub_type", &prefix)?;
            if !matches!(sub_type, "url" | "quick_reply" | "copy_code" | "flow") {
                return Err(MetaError::invalid(format!(
                    "{path}.sub_type {sub_type:?} is not one of url, quick_reply, copy_code, flow"
                )));
            }
            let Some(index) = button_index(required(component, "index", &prefix)?) else {
                return Err(MetaError::invalid(format!("{path}.index must be a button position like \"0\"")));
            };
            Ok(Kind::Button { sub_type: sub_type.to_owned(), index })
        }
        other => Err(MetaError::invalid(format!("{path}.type {other:?} is not one of header, body, button"))),
    }
}

/// A button's position, given as digits or as a number.
fn button_index(value: &Value) -> Option<u32> {
    match value {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// Checks one parameter; returns its type and, for a text parameter, whether it carries
/// `parameter_name`.
fn parse_parameter(value: &Value, path: &str, allowed: &[&str]) -> Result<(String, Option<bool>), MetaError> {
    let Some(param) = value.as_object() else {
        return Err(MetaError::invalid(format!("{path} must be an object")));
    };
    let prefix = format!("{path}.");
    let kind = required_str(param, "type", &prefix)?;
    if !allowed.contains(&kind) {
        return Err(MetaError::invalid(format!(
            "{path}.type {kind:?} is not allowed here (one of {})",
            allowed.join(", ")
        )));
    }
    match kind {
        "text" => {
            required_str(param, "text", &prefix)?;
            let named = match given(param, "parameter_name") {
                None => false,
                Some(_) => required_str(param, "parameter_name", &prefix).map(|_| true)?,
            };
            return Ok((kind.to_owned(), Some(named)));
        }
        "payload" | "coupon_code" => {
            required_str(param, kind, &prefix)?;
        }
        "currency" => {
            let currency = required_object(param, kind, &prefix)?;
            let inner = format!("{prefix}currency.");
            required_str(currency, "fallback_value", &inner)?;
            required_str(currency, "code", &inner)?;
            if !currency.get("amount_1000").is_some_and(Value::is_i64) {
                return Err(MetaError::missing(format!("{inner}amount_1000 is required (an integer)")));
            }
        }
        "date_time" => {
            let date_time = required_object(param, kind, &prefix)?;
            required_str(date_time, "fallback_value", &format!("{prefix}date_time."))?;
        }
        "image" | "document" | "video" => {
            let media = required_object(param, kind, &prefix)?;
            let has = |field: &str| media.get(field).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if !has("link") && !has("id") {
                return Err(MetaError::missing(format!("{prefix}{kind} needs a link or an id")));
            }
        }
        "location" => {
            let location = required_object(param, kind, &prefix)?;
            for field in ["latitude", "longitude"] {
                if !location.get(field).is_some_and(Value::is_number) {
                    return Err(MetaError::missing(format!("{prefix}location.{field} is required (a number)")));
                }
            }
        }
        _ => {
            required_object(param, kind, &prefix)?;
        }
    }
    Ok((kind.to_owned(), None))
}

// ---- against the registered template ----

/// The parameter counts of a send against its registered template (132000), and
/// `parameter_name` on text parameters of a named template (131008).
pub(super) fn check_against_template(message: &Message, template: &TemplateSpec) -> Result<(), MetaError> {
    let mismatch = |details: String| MetaError::new(132000, format!("template {}: {details}", template.name));
    check_header(message, template)?;
    check_counts(message, template).map_err(mismatch)?;
    check_url_buttons(message, template).map_err(mismatch)?;
    if template.named
        && let Some(path) = first_unnamed_text(message)
    {
        return Err(MetaError::missing(format!(
            "{path}.parameter_name is required: template {} uses named parameters",
            template.name
        )));
    }
    Ok(())
}

/// A media or location header: exactly one parameter of its type (132012, as Meta answers a
/// media template sent without its medium).
fn check_header(message: &Message, template: &TemplateSpec) -> Result<(), MetaError> {
    let Some(expected) = template.header_parameter() else { return Ok(()) };
    let header = message.components.iter().find(|c| c.kind == Kind::Header);
    let got = header.map(|c| c.types.join(", ")).filter(|t| !t.is_empty()).unwrap_or_else(|| "none".into());
    if header.is_some_and(|c| c.types == [expected]) {
        return Ok(());
    }
    let format = template.header_format.map_or("", HeaderFormat::label);
    Err(MetaError::new(
        132012,
        format!("template {}: the {format} header expects one {expected} parameter, got {got}", template.name),
    ))
}

/// The header's (a text header's) and the body's parameters, as many as the template has.
fn check_counts(message: &Message, template: &TemplateSpec) -> Result<(), String> {
    let count = |kind: Kind| message.components.iter().find(|c| c.kind == kind).map_or(0, |c| c.params);
    for (kind, name, expected) in
        [(Kind::Header, "header", template.header_params), (Kind::Body, "body", template.body_params)]
    {
        if kind == Kind::Header && template.header_parameter().is_some() {
            continue;
        }
        let got = count(kind);
        if got != expected {
            return Err(format!("{name} expects {expected} parameters, got {got}"));
        }
    }
    Ok(())
}

/// One parameter for each of the template's URL buttons, and none for any other.
fn check_url_buttons(message: &Message, template: &TemplateSpec) -> Result<(), String> {
    for component in &message.components {
        let Some(index) = component.kind.url_button() else { continue };
        if !template.buttons.contains(&index) {
            return Err(format!("url button {index} takes no parameter"));
        }
        if component.params != 1 {
            return Err(format!("url button {index} expects 1 parameter, got {}", component.params));
        }
    }
    for &index in &template.buttons {
        if !message.components.iter().any(|c| c.kind.url_button() == Some(index)) {
            return Err(format!("url button {index} expects 1 parameter, got none"));
        }
    }
    Ok(())
}

/// The path of the first header or body text parameter without `parameter_name`.
fn first_unnamed_text(message: &Message) -> Option<&str> {
    let header_or_body = message.components.iter().filter(|c| c.kind == Kind::Header || c.kind == Kind::Body);
    header_or_body.filter_map(|c| c.unnamed_text.as_deref()).next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_whatsapp::FAULT_NUMBERS;

    #[test]
    fn numbers_normalise_to_plus_and_digits() {
        assert_eq!(normalize_number("14155559001").as_deref(), Some("+14155559001"));
        assert_eq!(normalize_number("+14155559001").as_deref(), Some("+14155559001"));
        assert_eq!(normalize_number("+1 415 555 9001"), None);
        assert_eq!(normalize_number("123456"), None);
        assert_eq!(normalize_number("1234567890123456"), None);
        assert!(FAULT_NUMBERS.iter().all(|(n, _)| normalize_number(n).as_deref() == Some(*n)));
    }
}
