use serde_json::json;

use crate::stack::TestStack;

#[tokio::test]
async fn templates_derive_parameters_and_are_unique_per_account() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let body = json!({"account_id": account, "name": "holiday_offer", "language": "en_US", "category": "MARKETING",
        "status": "APPROVED", "parameter_format": "positional", "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, use code {{2}} for 20% off."},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Shop now", "url": "https://shop.example.com/o/{{1}}"}]}]});
    let created = t.post("/api/templates", body.clone()).await;
    let tpl = created.assert_ok(201).clone();
    let keys: Vec<&str> = tpl["parameters"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["header.1", "1", "2", "button.0"]);
    let id = tpl["id"].as_str().unwrap();
    assert_eq!(
        t.get(&format!("/api/templates/{id}")).await.assert_ok(200)["components"][3]["buttons"][0]["type"],
        "URL"
    );

    t.post("/api/templates", body.clone()).await.assert_error(409, "holiday_offer");
    let mut other_lang = body.clone();
    other_lang["language"] = json!("de");
    t.post("/api/templates", other_lang).await.assert_ok(201);

    let other_account = t.account("TIER_1K").await;
    t.template(&other_account, "welcome", "PENDING").await;
    let mine = t.get(&format!("/api/templates?account_id={account}")).await;
    assert_eq!(mine.assert_ok(200)["total"], 2);
    assert_eq!(t.get("/api/templates?limit=1").await.assert_ok(200)["total"], 3);

    t.delete(&format!("/api/templates/{id}")).await.assert_ok(200);
    t.get(&format!("/api/templates/{id}")).await.assert_error(404, "not found");
    // The name is free again once the template is gone.
    t.post("/api/templates", body).await.assert_ok(201);
}

#[tokio::test]
async fn template_input_is_checked() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let body = |format: &str, text: &str| {
        json!({"account_id": account, "name": "promo", "language": "en_US", "category": "UTILITY",
               "status": "APPROVED", "parameter_format": format, "components": [{"type": "BODY", "text": text}]})
    };
    t.post("/api/templates", body("positional", "Hi {{1}} {{3}}")).await.assert_error(422, "{{2}} is missing");
    t.post("/api/templates", body("positional", "Hi {{1}} {{name}}"))
        .await
        .assert_error(422, "mixes placeholder styles");
    t.post("/api/templates", body("named", "Hi {{First}}")).await.assert_error(422, "invalid placeholder");
    t.post("/api/templates", body("sometimes", "Hi")).await.assert_error(422, "parameter_format");
    let named = t.post("/api/templates", body("named", "Hi {{first_name}}, {{code}}")).await;
    let keys: Vec<&str> =
        named.assert_ok(201)["parameters"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["first_name", "code"]);
    let mut bad_account = body("positional", "Hi");
    bad_account["account_id"] = json!("0b6f4c6e-0000-4000-8000-000000000000");
    t.post("/api/templates", bad_account).await.assert_error(422, "account_id");
    let mut bad_category = body("positional", "Hi");
    bad_category["category"] = json!("PROMO");
    t.post("/api/templates", bad_category).await.assert_error(422, "category");
    t.get("/api/templates?account_id=nope").await.assert_error(400, "account_id");
}
