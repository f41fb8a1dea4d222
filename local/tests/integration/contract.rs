//! Regressions found by the contract run (`scripts/contract.sh`: schemathesis generating
//! requests from `docs/openapi.yaml` against a local stack).

use serde_json::json;

use crate::stack::TestStack;

/// Well-formed JSON with an object or an array where a name (an enum value) is expected was
/// answered "malformed JSON: expected value at line 1 column 166", naming no field.
#[tokio::test]
async fn a_value_of_the_wrong_kind_for_a_name_is_a_wrong_type_naming_the_field() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let template = |kind: serde_json::Value| {
        json!({"account_id": account, "name": "offer", "language": "en", "category": "UTILITY",
               "status": "APPROVED", "components": [{"type": "BUTTONS", "buttons": [{"type": kind, "text": "0"}]}]})
    };
    for kind in [json!({}), json!([null, null])] {
        let answer = t.post("/api/templates", template(kind)).await;
        answer.assert_error(400, "components[0].buttons[0].type: invalid type");
    }
    let tier = json!({"name": "Acme", "phone_number_id": "1", "business_account_id": "2", "access_token": "t",
                      "messaging_limit_tier": {}});
    t.post("/api/accounts", tier).await.assert_error(400, "messaging_limit_tier: invalid type");
    let raw = t.call(http::Method::POST, "/api/accounts", Some("application/json"), "{\"name\": ").await;
    raw.assert_error(400, "malformed JSON");
}

/// The routes whose body is optional took a body of only whitespace (a tab) as no body and
/// answered 2xx; a body that is there must be JSON. No body at all still means the defaults.
#[tokio::test]
async fn an_optional_body_of_only_whitespace_is_malformed_and_no_body_means_the_defaults() {
    let t = TestStack::new().await;
    let (c, _, _) = t.campaign().await;
    for route in ["retry-failed", "recipients/uploads", "exports"] {
        let path = format!("/api/campaigns/{c}/{route}");
        for blank in ["\t", " ", "\r\n"] {
            let answer = t.call(http::Method::POST, &path, Some("application/json"), blank).await;
            answer.assert_error(400, "malformed JSON: the body is empty or only whitespace");
        }
    }
    // Without a body: an upload and an export with their defaults; retry-failed reaches the
    // campaign's status (a draft has nothing to retry).
    let path = |route: &str| format!("/api/campaigns/{c}/{route}");
    t.call(http::Method::POST, &path("recipients/uploads"), None, "").await.assert_ok(201);
    t.call(http::Method::POST, &path("exports"), None, "").await.assert_ok(202);
    t.call(http::Method::POST, &path("retry-failed"), None, "").await.assert_error(409, "draft");
}
