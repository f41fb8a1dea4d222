//! Message templates in Meta's shape, and their placeholders.
//!
//! Meta numbers placeholders per component, so the keys of a campaign's `variable_mapping` are:
//! the body's own names (`1`, `2`… or `first_name`), `header.<name>` for the header's, and
//! `button.<index>` for a URL button's single placeholder.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::id::Id;
use super::limits::{
    BODY_TEXT_CHARS, BUTTON_PHONE_CHARS, BUTTON_TEXT_CHARS, BUTTON_URL_CHARS, BUTTONS, EXAMPLE_BYTES, FIELD_NAME_CHARS,
    FOOTER_TEXT_CHARS, HEADER_TEXT_CHARS, PLACEHOLDER_NAME_CHARS, TEMPLATE_NAME_CHARS, TEMPLATE_PARAMETERS,
};
use super::{Timestamp, required_text};
use crate::error::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TemplateStatus {
    Approved,
    Pending,
    Rejected,
    /// Paused by Meta (its quality fell): not sendable until Meta reinstates it.
    Paused,
    /// Disabled by Meta (or being deleted): never sendable again.
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterFormat {
    Positional,
    Named,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ComponentType {
    Header,
    Body,
    Footer,
    Buttons,
}

impl ComponentType {
    fn label(self) -> &'static str {
        match self {
            ComponentType::Header => "HEADER",
            ComponentType::Body => "BODY",
            ComponentType::Footer => "FOOTER",
            ComponentType::Buttons => "BUTTONS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ButtonType {
    QuickReply,
    Url,
    PhoneNumber,
    CopyCode,
}

impl ButtonType {
    fn label(self) -> &'static str {
        match self {
            ButtonType::QuickReply => "QUICK_REPLY",
            ButtonType::Url => "URL",
            ButtonType::PhoneNumber => "PHONE_NUMBER",
            ButtonType::CopyCode => "COPY_CODE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    #[serde(rename = "type")]
    pub kind: ButtonType,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Meta's sample values, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<serde_json::Value>,
}

/// A component as a request gives it: every field any type may carry, so that a field on the
/// wrong type is answered with a message naming it. [`NewTemplate::validate`] turns it into a
/// [`Component`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentInput {
    #[serde(rename = "type")]
    pub kind: ComponentType,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub buttons: Option<Vec<Button>>,
    #[serde(default)]
    pub example: Option<Value>,
}

/// What a header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HeaderFormat {
    Text,
    Image,
    Video,
    Document,
    Location,
}

impl HeaderFormat {
    const ALL: [(HeaderFormat, &'static str); 5] = [
        (HeaderFormat::Text, "TEXT"),
        (HeaderFormat::Image, "IMAGE"),
        (HeaderFormat::Video, "VIDEO"),
        (HeaderFormat::Document, "DOCUMENT"),
        (HeaderFormat::Location, "LOCATION"),
    ];

    /// The format named in any case (`video` is `VIDEO`).
    fn parse(value: &str) -> Option<HeaderFormat> {
        Self::ALL.iter().find(|(_, name)| name.eq_ignore_ascii_case(value)).map(|(f, _)| *f)
    }

    pub fn label(self) -> &'static str {
        Self::ALL.iter().find(|(f, _)| *f == self).map_or("TEXT", |(_, name)| name)
    }

    /// An image, a video or a document: the header takes a medium at send time.
    pub fn is_media(self) -> bool {
        matches!(self, HeaderFormat::Image | HeaderFormat::Video | HeaderFormat::Document)
    }
}

/// A validated component of a template, stored and answered in Meta's shape
/// (`{"type": "HEADER", "format": "IMAGE"}`, `{"type": "BODY", "text": "Hi {{1}}"}`…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum Component {
    Header {
        /// Absent means TEXT, as for Meta.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<HeaderFormat>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        example: Option<Value>,
    },
    Body {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        example: Option<Value>,
    },
    Footer {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        example: Option<Value>,
    },
    Buttons {
        buttons: Vec<Button>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        example: Option<Value>,
    },
}

impl Component {
    pub fn kind(&self) -> ComponentType {
        match self {
            Component::Header { .. } => ComponentType::Header,
            Component::Body { .. } => ComponentType::Body,
            Component::Footer { .. } => ComponentType::Footer,
            Component::Buttons { .. } => ComponentType::Buttons,
        }
    }
}

/// Where a placeholder sits in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Slot {
    Header,
    Body,
    Button,
}

/// One placeholder of a template, named by its `variable_mapping` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub component: Slot,
    /// The placeholder's own name inside its component (`1`, `first_name`).
    pub name: String,
    /// The button's position, for URL buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: Id,
    pub account_id: Id,
    pub name: String,
    pub language: String,
    pub category: Category,
    pub status: TemplateStatus,
    pub parameter_format: ParameterFormat,
    pub components: Vec<Component>,
    pub parameters: Vec<Parameter>,
    pub created_at: Timestamp,
    /// Why Meta last changed the status (from its `message_template_status_update` webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Meta's quality rating of the template (`GREEN`, `YELLOW`, `RED`), from its
    /// `message_template_quality_update` webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_score: Option<String>,
}

impl Template {
    /// The format of the template's header, if it has one (absent means TEXT, as for Meta).
    pub fn header_format(&self) -> Option<HeaderFormat> {
        self.components.iter().find_map(|c| match c {
            Component::Header { format, .. } => Some(format.unwrap_or(HeaderFormat::Text)),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    pub account_id: String,
    pub name: String,
    pub language: String,
    pub category: Category,
    pub status: TemplateStatus,
    #[serde(default = "positional")]
    pub parameter_format: ParameterFormat,
    pub components: Vec<ComponentInput>,
}

fn positional() -> ParameterFormat {
    ParameterFormat::Positional
}

/// A placeholder as written in a text: positional `{{1}}` or named `{{first_name}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Positional(u32),
    Named(String),
}

/// Finds every `{{…}}` in `text`; anything between the braces that is neither a number nor a
/// lowercase name is an error that names the component.
fn placeholders(component: &str, text: &str) -> Result<Vec<Placeholder>, Invalid> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(Invalid(format!("{component} text has an unclosed '{{{{'")));
        };
        let inner = &after[..end];
        let p = if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit()) {
            match inner.parse::<u32>() {
                Ok(n) if n >= 1 => Placeholder::Positional(n),
                _ => return Err(bad_placeholder(component, inner)),
            }
        } else if inner.starts_with(|c: char| c.is_ascii_lowercase())
            && inner.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            if inner.len() > PLACEHOLDER_NAME_CHARS {
                return Err(Invalid(format!(
                    "{component} text has a placeholder name longer than {PLACEHOLDER_NAME_CHARS} characters"
                )));
            }
            Placeholder::Named(inner.to_string())
        } else {
            return Err(bad_placeholder(component, inner));
        };
        found.push(p);
        rest = &after[end + 2..];
    }
    Ok(found)
}

fn bad_placeholder(component: &str, inner: &str) -> Invalid {
    let inner: String = inner.chars().take(PLACEHOLDER_NAME_CHARS).collect();
    Invalid(format!(
        "{component} text has an invalid placeholder {{{{{inner}}}}}: use {{{{1}}}}, {{{{2}}}}… or {{{{lowercase_name}}}}"
    ))
}

/// Checks the placeholders of one component against the template's format and returns their
/// names in order: positional ones must be numbered 1..n without gaps, named ones are unique.
fn component_names(component: &str, found: Vec<Placeholder>, format: ParameterFormat) -> Result<Vec<String>, Invalid> {
    let mut numbers = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for p in found {
        match (p, format) {
            (Placeholder::Positional(n), ParameterFormat::Positional) => numbers.push(n),
            (Placeholder::Named(n), ParameterFormat::Named) => {
                if !names.contains(&n) {
                    names.push(n)
                }
            }
            (Placeholder::Positional(n), ParameterFormat::Named) => {
                return Err(Invalid(format!(
                    "{component} text mixes placeholder styles: {{{{{n}}}}} in a template whose parameter_format is named"
                )));
            }
            (Placeholder::Named(n), ParameterFormat::Positional) => {
                return Err(Invalid(format!(
                    "{component} text mixes placeholder styles: {{{{{n}}}}} in a template whose parameter_format is positional"
                )));
            }
        }
    }
    if format == ParameterFormat::Named {
        return Ok(names);
    }
    numbers.sort_unstable();
    numbers.dedup();
    for (i, n) in numbers.iter().enumerate() {
        let expected = i as u32 + 1;
        if *n != expected {
            return Err(Invalid(format!(
                "{component} placeholders must be numbered {{{{1}}}} to {{{{{}}}}} without gaps; {{{{{expected}}}}} is missing",
                numbers.len()
            )));
        }
    }
    Ok(numbers.iter().map(|n| n.to_string()).collect())
}

fn check_language(v: &str) -> Result<String, Invalid> {
    let v = v.trim();
    let (lang, region) = v.split_once('_').unwrap_or((v, ""));
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_lowercase());
    let region_ok =
        region.is_empty() || ((2..=4).contains(&region.len()) && region.chars().all(|c| c.is_ascii_alphanumeric()));
    if !lang_ok || !region_ok || v.ends_with('_') {
        return Err(Invalid(format!(
            "language must be a WhatsApp language code such as en, en_US or pt_BR (got '{v}')"
        )));
    }
    Ok(v.to_string())
}

fn check_name(v: &str) -> Result<String, Invalid> {
    let v = required_text("name", v, TEMPLATE_NAME_CHARS)?;
    if !v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(Invalid(
            "name must use only lowercase letters, digits and underscores, as WhatsApp template names do".into(),
        ));
    }
    Ok(v)
}

fn text_of<'a>(text: &'a str, label: &str, max: usize) -> Result<&'a str, Invalid> {
    if text.trim().is_empty() {
        return Err(Invalid(format!("{label} component needs a text")));
    }
    if text.chars().count() > max {
        return Err(Invalid(format!("{label} text must be at most {max} characters")));
    }
    Ok(text)
}

/// Validates the components and derives the template's parameters, in the order a message
/// carries them: header, body, then buttons.
pub fn parse_parameters(components: &[Component], format: ParameterFormat) -> Result<Vec<Parameter>, Invalid> {
    let count = |k| components.iter().filter(|c| c.kind() == k).count();
    if count(ComponentType::Body) != 1 {
        return Err(Invalid("components must contain exactly one BODY".into()));
    }
    for k in [ComponentType::Header, ComponentType::Footer, ComponentType::Buttons] {
        if count(k) > 1 {
            return Err(Invalid(format!("components may contain at most one {}", k.label())));
        }
    }
    let param = |component, key: String, name: String, index| Parameter { key, component, name, index };
    let mut header = Vec::new();
    let mut body = Vec::new();
    let mut buttons = Vec::new();
    for c in components {
        match c {
            Component::Header { format: None | Some(HeaderFormat::Text), text, .. } => {
                let text = text_of(text.as_deref().unwrap_or(""), "HEADER", HEADER_TEXT_CHARS)?;
                let names = component_names("HEADER", placeholders("HEADER", text)?, format)?;
                if names.len() > 1 {
                    return Err(Invalid("HEADER text may have at most one placeholder".into()));
                }
                header.extend(names.into_iter().map(|n| param(Slot::Header, format!("header.{n}"), n, None)));
            }
            Component::Header { .. } => {}
            Component::Body { text, .. } => {
                let text = text_of(text, "BODY", BODY_TEXT_CHARS)?;
                let names = component_names("BODY", placeholders("BODY", text)?, format)?;
                body.extend(names.into_iter().map(|n| param(Slot::Body, n.clone(), n, None)));
            }
            Component::Footer { text, .. } => {
                let text = text_of(text, "FOOTER", FOOTER_TEXT_CHARS)?;
                if !placeholders("FOOTER", text)?.is_empty() {
                    return Err(Invalid("FOOTER text cannot have placeholders".into()));
                }
            }
            Component::Buttons { buttons: list, .. } => {
                if list.is_empty() || list.len() > BUTTONS {
                    return Err(Invalid(format!("BUTTONS must hold 1 to {BUTTONS} buttons")));
                }
                for (i, b) in list.iter().enumerate() {
                    let label = format!("buttons[{i}]");
                    required_text(&format!("{label}.text"), &b.text, BUTTON_TEXT_CHARS)?;
                    match b.kind {
                        ButtonType::Url => {
                            let url = b.url.as_deref().unwrap_or("");
                            if !(url.starts_with("https://") || url.starts_with("http://")) {
                                return Err(Invalid(format!("{label}.url must be an http(s) URL")));
                            }
                            let found = placeholders(&format!("{label}.url"), url)?;
                            match found.as_slice() {
                                [] => {}
                                [Placeholder::Positional(1)] if url.ends_with("{{1}}") => {
                                    buttons.push(param(Slot::Button, format!("button.{i}"), "1".into(), Some(i)))
                                }
                                _ => {
                                    return Err(Invalid(format!(
                                        "{label}.url may have one placeholder, {{{{1}}}}, at its end"
                                    )));
                                }
                            }
                        }
                        ButtonType::PhoneNumber => {
                            if b.phone_number.as_deref().unwrap_or("").trim().is_empty() {
                                return Err(Invalid(format!("{label}.phone_number is required")));
                            }
                        }
                        ButtonType::QuickReply | ButtonType::CopyCode => {}
                    }
                }
            }
        }
    }
    header.extend(body);
    header.extend(buttons);
    if header.len() > TEMPLATE_PARAMETERS {
        return Err(Invalid(format!(
            "the template has {} placeholders; the limit is {TEMPLATE_PARAMETERS}",
            header.len()
        )));
    }
    Ok(header)
}

/// Meta's sample values: text, in arrays and objects, at most [`EXAMPLE_BYTES`] as JSON.
fn check_example(label: &str, example: Option<&Value>) -> Result<(), Invalid> {
    fn only_text(v: &Value) -> bool {
        match v {
            Value::String(_) => true,
            Value::Array(items) => items.iter().all(only_text),
            Value::Object(o) => {
                o.iter().all(|(k, v)| !k.is_empty() && k.chars().count() <= FIELD_NAME_CHARS && only_text(v))
            }
            _ => false,
        }
    }
    let Some(example) = example else { return Ok(()) };
    if serde_json::to_vec(example).map_or(true, |json| json.len() > EXAMPLE_BYTES) {
        return Err(Invalid(format!("{label}.example must be at most {EXAMPLE_BYTES} bytes as JSON")));
    }
    if !only_text(example) {
        return Err(Invalid(format!(
            "{label}.example must hold Meta's sample values: text in arrays and objects (keys of 1 to {FIELD_NAME_CHARS} characters)"
        )));
    }
    Ok(())
}

/// Checks that a component carries only the fields of its type, and their sizes, and gives it
/// its type's shape (a header's `format` in any case is read as Meta's capitals).
fn checked_fields(c: ComponentInput) -> Result<Component, Invalid> {
    let label = c.kind.label();
    let refuse = |field: &str, why: &str| Invalid(format!("{label} takes no {field}: {why}"));
    if c.kind != ComponentType::Header && c.format.is_some() {
        return Err(refuse("format", "only a HEADER has one"));
    }
    if c.kind != ComponentType::Buttons && c.buttons.is_some() {
        return Err(refuse("buttons", "only a BUTTONS component has them"));
    }
    if c.kind == ComponentType::Buttons && c.text.is_some() {
        return Err(refuse("text", "each button has its own"));
    }
    let format = match &c.format {
        None => None,
        Some(name) => {
            let Some(format) = HeaderFormat::parse(name) else {
                let names: Vec<_> = HeaderFormat::ALL.iter().map(|(_, name)| *name).collect();
                return Err(Invalid(format!("HEADER format must be one of {}", names.join(", "))));
            };
            if format != HeaderFormat::Text && c.text.is_some() {
                return Err(Invalid(format!("HEADER takes no text when its format is {}", format.label())));
            }
            Some(format)
        }
    };
    check_example(label, c.example.as_ref())?;
    for (i, b) in c.buttons.iter().flatten().enumerate() {
        let label = format!("buttons[{i}]");
        let kind = b.kind.label();
        if b.url.is_some() && b.kind != ButtonType::Url {
            return Err(Invalid(format!("{label}.url is only for URL buttons, not {kind}")));
        }
        if b.phone_number.is_some() && b.kind != ButtonType::PhoneNumber {
            return Err(Invalid(format!("{label}.phone_number is only for PHONE_NUMBER buttons, not {kind}")));
        }
        let too_long = |field: &str, v: &Option<String>, max: usize| match v {
            Some(v) if v.chars().count() > max => {
                Err(Invalid(format!("{label}.{field} must be at most {max} characters")))
            }
            _ => Ok(()),
        };
        too_long("url", &b.url, BUTTON_URL_CHARS)?;
        too_long("phone_number", &b.phone_number, BUTTON_PHONE_CHARS)?;
        check_example(&label, b.example.as_ref())?;
    }
    let ComponentInput { text, buttons, example, .. } = c;
    Ok(match c.kind {
        ComponentType::Header => Component::Header { format, text, example },
        ComponentType::Body => Component::Body { text: text.unwrap_or_default(), example },
        ComponentType::Footer => Component::Footer { text: text.unwrap_or_default(), example },
        ComponentType::Buttons => Component::Buttons { buttons: buttons.unwrap_or_default(), example },
    })
}

impl NewTemplate {
    pub fn validate(self, id: Id, now: &Timestamp) -> Result<Template, Invalid> {
        let components: Vec<Component> = self.components.into_iter().map(checked_fields).collect::<Result<_, _>>()?;
        let parameters = parse_parameters(&components, self.parameter_format)?;
        Ok(Template {
            id,
            account_id: Id::reference("account_id", &self.account_id)?,
            name: check_name(&self.name)?,
            language: check_language(&self.language)?,
            category: self.category,
            status: self.status,
            parameter_format: self.parameter_format,
            components,
            parameters,
            created_at: now.clone(),
            status_reason: None,
            quality_score: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn comps(v: serde_json::Value) -> Vec<Component> {
        let inputs: Vec<ComponentInput> = serde_json::from_value(v).unwrap();
        inputs.into_iter().map(|c| checked_fields(c).unwrap()).collect()
    }

    fn keys(r: Result<Vec<Parameter>, Invalid>) -> Vec<String> {
        r.unwrap().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn positional_parameters_from_every_component() {
        let c = comps(json!([
            {"type":"HEADER","format":"TEXT","text":"Hello {{1}}"},
            {"type":"BODY","text":"Hi {{1}}, use {{2}} before {{3}}. Again {{1}}."},
            {"type":"FOOTER","text":"Reply STOP"},
            {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"Stop"},
                {"type":"URL","text":"Shop","url":"https://x.example/o/{{1}}"}]}
        ]));
        let p = parse_parameters(&c, ParameterFormat::Positional).unwrap();
        let k: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(k, ["header.1", "1", "2", "3", "button.1"]);
        assert_eq!(p[4].index, Some(1));
    }

    #[test]
    fn named_parameters_keep_first_appearance_order() {
        let c = comps(json!([{"type":"BODY","text":"Hi {{first_name}}, {{code}} {{first_name}}"}]));
        assert_eq!(keys(parse_parameters(&c, ParameterFormat::Named)), ["first_name", "code"]);
    }

    #[test]
    fn gaps_mixing_and_bad_placeholders_are_refused() {
        let gap = comps(json!([{"type":"BODY","text":"{{1}} and {{3}}"}]));
        let e = parse_parameters(&gap, ParameterFormat::Positional).unwrap_err();
        assert!(e.0.contains("{{2}} is missing"), "{}", e.0);
        let mixed = comps(json!([{"type":"BODY","text":"{{1}} and {{name}}"}]));
        let e = parse_parameters(&mixed, ParameterFormat::Positional).unwrap_err();
        assert!(e.0.contains("mixes placeholder styles"), "{}", e.0);
        let e = parse_parameters(&mixed, ParameterFormat::Named).unwrap_err();
        assert!(e.0.contains("mixes"), "{}", e.0);
        let bad = comps(json!([{"type":"BODY","text":"Hi {{First Name}}"}]));
        let e = parse_parameters(&bad, ParameterFormat::Named).unwrap_err();
        assert!(e.0.contains("{{First Name}}"), "{}", e.0);
        let zero = comps(json!([{"type":"BODY","text":"Hi {{0}}"}]));
        assert!(parse_parameters(&zero, ParameterFormat::Positional).is_err());
        let open = comps(json!([{"type":"BODY","text":"Hi {{1"}]));
        assert!(parse_parameters(&open, ParameterFormat::Positional).unwrap_err().0.contains("unclosed"));
    }

    #[test]
    fn structure_rules() {
        let none = comps(json!([{"type":"FOOTER","text":"x"}]));
        assert!(parse_parameters(&none, ParameterFormat::Positional).unwrap_err().0.contains("BODY"));
        let footer = comps(json!([{"type":"BODY","text":"x"},{"type":"FOOTER","text":"{{1}}"}]));
        assert!(parse_parameters(&footer, ParameterFormat::Positional).is_err());
        let url = comps(json!([{"type":"BODY","text":"x"},{"type":"BUTTONS","buttons":[
            {"type":"URL","text":"Go","url":"https://x.example/{{1}}/y"}]}]));
        assert!(parse_parameters(&url, ParameterFormat::Positional).unwrap_err().0.contains("buttons[0].url"));
        let image = comps(json!([{"type":"HEADER","format":"IMAGE"},{"type":"BODY","text":"x {{1}}"}]));
        assert_eq!(keys(parse_parameters(&image, ParameterFormat::Positional)), ["1"]);
    }

    fn new_template(components: serde_json::Value) -> Result<Template, Invalid> {
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": "0b6f4c6e-0000-4000-8000-000000000001", "name": "offer", "language": "en",
            "category": "UTILITY", "status": "APPROVED", "components": components
        }))
        .unwrap();
        t.validate("t".into(), &"now".into())
    }

    #[test]
    fn components_take_only_the_fields_of_their_type() {
        let err = |c: serde_json::Value| new_template(c).unwrap_err().0;
        let body = json!({"type": "BODY", "text": "Hi"});
        assert!(err(json!([{"type": "BODY", "text": "x", "format": "TEXT"}])).contains("BODY takes no format"));
        assert!(err(json!([{"type": "BODY", "text": "x", "buttons": []}])).contains("BODY takes no buttons"));
        let buttons = json!({"type": "BUTTONS", "text": "x", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"}]});
        assert!(err(json!([body, buttons])).contains("BUTTONS takes no text"));
        let image = json!({"type": "HEADER", "format": "image", "text": "x"});
        assert!(err(json!([image, body])).contains("HEADER takes no text when its format is IMAGE"));
        assert!(err(json!([{"type": "HEADER", "format": "GIF"}, body])).contains("HEADER format must be one of"));
        let t = new_template(json!([{"type": "HEADER", "format": "video"}, body])).unwrap();
        assert_eq!(serde_json::to_value(&t.components[0]).unwrap(), json!({"type": "HEADER", "format": "VIDEO"}));
        let url_on_reply =
            json!({"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "a", "url": "https://x"}]});
        assert!(err(json!([body, url_on_reply])).contains("buttons[0].url is only for URL buttons"));
        let phone_on_url = json!({"type": "BUTTONS", "buttons": [{"type": "URL", "text": "a", "url": "https://x", "phone_number": "+1"}]});
        assert!(err(json!([body, phone_on_url])).contains("buttons[0].phone_number is only for PHONE_NUMBER"));
    }

    #[test]
    fn sizes_and_examples_are_limited() {
        let err = |c: serde_json::Value| new_template(c).unwrap_err().0;
        let body = json!({"type": "BODY", "text": "Hi"});
        let long_url = format!("https://x.example/{}", "a".repeat(BUTTON_URL_CHARS));
        let url = json!({"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Go", "url": long_url}]});
        assert!(err(json!([body, url])).contains("buttons[0].url must be at most 2000 characters"));
        let phone = json!({"type": "BUTTONS", "buttons": [{"type": "PHONE_NUMBER", "text": "Call", "phone_number": "1".repeat(21)}]});
        assert!(err(json!([body, phone])).contains("buttons[0].phone_number must be at most 20 characters"));
        let big = json!({"type": "BODY", "text": "Hi", "example": {"body_text": [["x".repeat(EXAMPLE_BYTES)]]}});
        assert!(err(json!([big])).contains("BODY.example must be at most 4096 bytes"));
        for bad in [json!({"body_text": [[1e300]]}), json!({"": ["x"]}), json!(true), json!([null])] {
            let e = err(json!([{"type": "BODY", "text": "Hi", "example": bad}]));
            assert!(e.contains("BODY.example must hold Meta's sample values"), "{e}");
        }
        assert!(
            new_template(json!([{"type": "BODY", "text": "Hi {{1}}", "example": {"body_text": [["Ann"]]}}])).is_ok()
        );
        let many: String = (1..=TEMPLATE_PARAMETERS + 1).map(|i| format!("{{{{{i}}}}}")).collect();
        assert!(err(json!([{"type": "BODY", "text": many}])).contains("101 placeholders; the limit is 100"));
        let long_name = format!("{{{{{}}}}}", "a".repeat(PLACEHOLDER_NAME_CHARS + 1));
        let t: NewTemplate = serde_json::from_value(json!({
            "account_id": "0b6f4c6e-0000-4000-8000-000000000001", "name": "offer", "language": "en",
            "category": "UTILITY", "status": "APPROVED", "parameter_format": "named",
            "components": [{"type": "BODY", "text": long_name}]
        }))
        .unwrap();
        assert!(t.validate("t".into(), &"now".into()).unwrap_err().0.contains("longer than 64 characters"));
        let not_uuid: NewTemplate = serde_json::from_value(json!({
            "account_id": "a1", "name": "offer", "language": "en", "category": "UTILITY", "status": "APPROVED",
            "components": [body]
        }))
        .unwrap();
        assert!(not_uuid.validate("t".into(), &"now".into()).unwrap_err().0.starts_with("account_id must be the id"));
    }

    #[test]
    fn names_and_languages() {
        assert!(check_name("holiday_offer_2").is_ok());
        assert!(check_name("Holiday Offer").is_err());
        for ok in ["en", "en_US", "pt_BR", "zh_CN", "fil"] {
            assert!(check_language(ok).is_ok(), "{ok}");
        }
        for bad in ["EN", "en-US", "english", "en_", ""] {
            assert!(check_language(bad).is_err(), "{bad}");
        }
    }
}
