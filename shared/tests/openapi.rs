//! The OpenAPI contract (`docs/openapi.yaml`) against the router: the same operations as
//! [`ROUTES`] (each naming its function), the envelope and error statuses every route can
//! answer, API keys on `/api/...` only, and the limits of `domain::limits`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use shared::domain::account::MAX_THROUGHPUT_MPS;
use shared::domain::limits::*;
use shared::http::ROUTES;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

fn contract() -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::to_value(yaml).expect("the contract is plain JSON data")
}

/// Every operation of the contract: (METHOD, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("{r} is not defined")),
        None => v,
    }
}

#[test]
fn every_route_is_in_the_contract_and_nothing_else() {
    let doc = contract();
    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routes missing from docs/openapi.yaml: {missing:?}");
    assert!(extra.is_empty(), "operations in docs/openapi.yaml that no route serves: {extra:?}");
    for (method, path, op) in operations(&doc) {
        let route = ROUTES.iter().find(|r| r.method.as_str() == method && r.path == path).unwrap();
        assert_eq!(op["x-function"], route.name, "{method} {path}: x-function names the function serving it");
    }
    let ids: Vec<String> = operations(&doc).into_iter().map(|(_, _, op)| op["operationId"].to_string()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len(), "operationIds are unique: {ids:?}");
}

#[test]
fn every_operation_documents_its_envelope_and_error_statuses() {
    let doc = contract();
    let global = doc["security"].as_array().expect("global security");
    let schemes: Vec<&str> = global.iter().flat_map(|s| s.as_object().unwrap().keys()).map(String::as_str).collect();
    assert_eq!(schemes, ["apiKey", "apiKeyBearer"]);
    assert_eq!(doc.pointer("/components/securitySchemes/apiKey/name"), Some(&Value::from("X-API-Key")));
    assert_eq!(doc.pointer("/components/securitySchemes/apiKeyBearer/scheme"), Some(&Value::from("bearer")));

    for (method, path, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{at}: no responses"));
        let has = |code: &str| responses.contains_key(code);
        if path.starts_with("/api/") {
            assert!(op.get("security").is_none(), "{at}: takes the API key (the global security)");
        } else {
            assert_eq!(op["security"], serde_json::json!([]), "{at}: the webhook is public (Meta signs it)");
        }
        assert!(path.starts_with("/webhooks/") && method == "GET" || has("401"), "{at}: 401");
        assert!(has("503"), "{at}: 503 when the store fails");
        if path.contains("{id}") {
            assert!(has("404"), "{at}: 404 for an unknown id");
        }
        let query = op["parameters"].as_array().into_iter().flatten().any(|p| resolve(&doc, p)["in"] == "query");
        if query {
            assert!(has("400"), "{at}: 400 for a bad query value");
        }
        assert!(has("413"), "{at}: 413 for a body over 6 MB (the dispatcher refuses it on any route)");
        if path.starts_with("/api/") && op.pointer("/requestBody/content/application~1json").is_some() {
            for code in ["400", "415", "422"] {
                assert!(has(code), "{at}: {code} for a body it cannot take");
            }
        }
        for (code, response) in responses {
            let response = resolve(&doc, response);
            let content = response["content"].as_object().unwrap_or_else(|| panic!("{at} {code}: no content"));
            if let Some(text) = content.get("text/plain") {
                assert_eq!((method.as_str(), path.as_str(), code.as_str()), ("GET", "/webhooks/whatsapp", "200"));
                assert_eq!(text["schema"]["type"], "string");
                continue;
            }
            let schema = resolve(&doc, &content["application/json"]["schema"]);
            let status = &schema["properties"]["status"]["const"];
            if code.starts_with('2') {
                assert_eq!(status, "success", "{at} {code}: the success envelope");
                assert!(schema["properties"].get("data").is_some(), "{at} {code}: data");
            } else {
                assert_eq!(status, "error", "{at} {code}: the error envelope");
                assert_eq!(schema["required"], serde_json::json!(["status", "message", "data"]), "{at} {code}");
                assert_eq!(schema["properties"]["data"]["type"], "null", "{at} {code}");
            }
        }
    }
}

#[test]
fn the_contract_carries_the_limits_of_the_code() {
    let doc = contract();
    let s = "/components/schemas";
    let limits: [(String, usize); 30] = [
        (format!("{s}/AccountName/maxLength"), ACCOUNT_NAME_CHARS),
        (format!("{s}/MetaId/maxLength"), META_ID_CHARS),
        (format!("{s}/AccessToken/maxLength"), ACCESS_TOKEN_CHARS),
        (format!("{s}/Account/properties/throughput_mps/maximum"), MAX_THROUGHPUT_MPS as usize),
        (format!("{s}/NewTemplate/properties/name/maxLength"), TEMPLATE_NAME_CHARS),
        (format!("{s}/HeaderComponent/properties/text/maxLength"), HEADER_TEXT_CHARS),
        (format!("{s}/BodyComponent/properties/text/maxLength"), BODY_TEXT_CHARS),
        (format!("{s}/FooterComponent/properties/text/maxLength"), FOOTER_TEXT_CHARS),
        (format!("{s}/ButtonsComponent/properties/buttons/maxItems"), BUTTONS),
        (format!("{s}/ButtonText/maxLength"), BUTTON_TEXT_CHARS),
        (format!("{s}/NewButton/oneOf/1/properties/url/maxLength"), BUTTON_URL_CHARS),
        (format!("{s}/NewButton/oneOf/2/properties/phone_number/maxLength"), BUTTON_PHONE_CHARS),
        (format!("{s}/Example/anyOf/2/propertyNames/maxLength"), FIELD_NAME_CHARS),
        (format!("{s}/CampaignName/maxLength"), CAMPAIGN_NAME_CHARS),
        (format!("{s}/VariableMapping/maxProperties"), TEMPLATE_PARAMETERS),
        (format!("{s}/VariableMapping/propertyNames/maxLength"), MAPPING_KEY_CHARS),
        (format!("{s}/VariableMapping/additionalProperties/maxLength"), FIELD_NAME_CHARS),
        (format!("{s}/HeaderMedia/properties/link/maxLength"), MEDIA_LINK_CHARS),
        (format!("{s}/HeaderMedia/properties/id/maxLength"), MEDIA_ID_CHARS),
        (format!("{s}/HeaderMedia/properties/filename/maxLength"), MEDIA_FILENAME_CHARS),
        (format!("{s}/HeaderLocation/properties/name/maxLength"), HEADER_LOCATION_TEXT_CHARS),
        (format!("{s}/HeaderLocation/properties/address/maxLength"), HEADER_LOCATION_TEXT_CHARS),
        (format!("{s}/RecipientsJson/properties/recipients/maxItems"), IMPORT_ROWS),
        (format!("{s}/RecipientsJson/properties/recipients/items/maxProperties"), FIELDS),
        (format!("{s}/RecipientsJson/properties/recipients/items/propertyNames/maxLength"), FIELD_NAME_CHARS),
        (format!("{s}/RecipientsJson/properties/recipients/items/properties/phone_number/maxLength"), PHONE_CHARS),
        (format!("{s}/RecipientsJson/properties/recipients/items/additionalProperties/maxLength"), FIELD_VALUE_CHARS),
        (format!("{s}/ImportResponse/properties/data/properties/errors/maxItems"), REPORTED_ERRORS),
        ("/components/parameters/Page/schema/maximum".into(), MAX_PAGE as usize),
        ("/components/parameters/Limit20/schema/maximum".into(), MAX_PAGE_SIZE as usize),
    ];
    for (pointer, limit) in limits {
        let documented = doc.pointer(&pointer).and_then(Value::as_u64);
        assert_eq!(documented, Some(limit as u64), "{pointer} in docs/openapi.yaml");
    }
}
