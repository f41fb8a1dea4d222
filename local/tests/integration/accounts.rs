use serde_json::json;

use crate::stack::{TestStack, s};

#[tokio::test]
async fn accounts_are_created_read_listed_updated_and_deleted() {
    let t = TestStack::new().await;
    let body = json!({"name": "Acme", "phone_number_id": "1065", "business_account_id": "1022",
                      "access_token": "EAAG-secret", "messaging_limit_tier": "TIER_10K"});
    let created = t.post("/api/accounts", body).await;
    let a = created.assert_ok(201).clone();
    let id = a["id"].as_str().unwrap();
    assert_eq!((a["throughput_mps"].as_u64(), a["messaging_limit_tier"].as_str()), (Some(80), Some("TIER_10K")));
    assert!(a.get("access_token").is_none(), "the token is write-only: {a}");
    assert!(!created.body.to_string().contains("EAAG-secret"));

    // The token is the account's own secret in Secrets Manager; nothing of it is in the table.
    assert_eq!(t.app.tokens.secret_name(id), format!("{}/accounts/{id}", t.app.config.table_name));
    assert_eq!(t.app.tokens.get(id).await.unwrap().unwrap().expose(), "EAAG-secret");
    assert_no_token_in_the_table(&t, id, "EAAG-secret").await;

    let got = t.get(&format!("/api/accounts/{id}")).await;
    assert_eq!(got.assert_ok(200)["name"], "Acme");
    assert!(got.data().get("access_token").is_none());
    assert!(!t.get("/api/accounts").await.body.to_string().contains("EAAG-secret"));

    let updated = t
        .put(
            &format!("/api/accounts/{id}"),
            json!({"messaging_limit_tier": "TIER_1K", "throughput_mps": 1000, "access_token": "NEW-token"}),
        )
        .await;
    let u = updated.assert_ok(200);
    assert_eq!(
        (u["messaging_limit_tier"].as_str(), u["throughput_mps"].as_u64(), u["name"].as_str()),
        (Some("TIER_1K"), Some(1000), Some("Acme"))
    );
    assert!(!updated.body.to_string().contains("NEW-token"));
    assert_eq!(t.app.tokens.get(id).await.unwrap().unwrap().expose(), "NEW-token");
    assert_no_token_in_the_table(&t, id, "NEW-token").await;
    // A change without a token keeps it.
    t.put(&format!("/api/accounts/{id}"), json!({"name": "Acme 2"})).await.assert_ok(200);
    assert_eq!(t.app.tokens.get(id).await.unwrap().unwrap().expose(), "NEW-token");

    t.delete(&format!("/api/accounts/{id}")).await.assert_ok(200);
    t.get(&format!("/api/accounts/{id}")).await.assert_error(404, "not found");
    assert!(t.app.tokens.get(id).await.unwrap().is_none(), "the secret goes with the account");
}

/// No attribute of any item under the account's key holds the token.
async fn assert_no_token_in_the_table(t: &TestStack, id: &str, token: &str) {
    let db = &t.app.db;
    let out = db
        .client()
        .query()
        .table_name(db.table())
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", s(&format!("ACCOUNT#{id}")))
        .send()
        .await
        .unwrap();
    let items = out.items.unwrap_or_default();
    assert!(!items.is_empty());
    for item in items {
        assert!(!item.contains_key("access_token"), "{item:?}");
        assert!(item.values().all(|v| !v.as_s().is_ok_and(|v| v.contains(token))), "{item:?}");
    }
    assert!(t.item(format!("ACCOUNT#{id}"), "TOKEN").await.is_none());
}

#[tokio::test]
async fn a_token_kept_in_the_table_by_an_earlier_version_moves_to_its_secret_when_set_again() {
    let t = TestStack::new().await;
    let id = t.account("TIER_1K").await;
    t.app.tokens.delete(&id).await.unwrap();
    t.set(format!("ACCOUNT#{id}"), "TOKEN", &[("access_token", s("EAAG-old"))]).await;
    t.put(&format!("/api/accounts/{id}"), json!({"access_token": "EAAG-again"})).await.assert_ok(200);
    assert_eq!(t.app.tokens.get(&id).await.unwrap().unwrap().expose(), "EAAG-again");
    assert!(t.item(format!("ACCOUNT#{id}"), "TOKEN").await.is_none(), "the old token item is deleted");
}

#[tokio::test]
async fn account_input_is_checked_field_by_field() {
    let t = TestStack::new().await;
    let base = json!({"name": "Acme", "phone_number_id": "1065", "business_account_id": "1022",
                      "access_token": "t", "messaging_limit_tier": "TIER_1K"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    t.post("/api/accounts", with("messaging_limit_tier", json!("TIER_5")))
        .await
        .assert_error(422, "messaging_limit_tier");
    t.post("/api/accounts", with("throughput_mps", json!(1001))).await.assert_error(422, "throughput_mps");
    t.post("/api/accounts", with("throughput_mps", json!("fast"))).await.assert_error(400, "throughput_mps");
    t.post("/api/accounts", with("phone_number_id", json!("abc"))).await.assert_error(422, "phone_number_id");
    t.post("/api/accounts", with("name", json!("  "))).await.assert_error(422, "name");
    t.post("/api/accounts", with("extra", json!(1))).await.assert_error(422, "extra");
    t.post("/api/accounts", json!({"name": "x"})).await.assert_error(422, "required");
    let raw = t.call(http::Method::POST, "/api/accounts", Some("application/json"), "{not json").await;
    raw.assert_error(400, "malformed JSON");
    let page = t.get("/api/accounts").await;
    assert_eq!(page.assert_ok(200)["total"], 0, "nothing half-written");
    let id = t.account("TIER_1K").await;
    t.put(&format!("/api/accounts/{id}"), json!({"throughput_mps": 0})).await.assert_error(422, "throughput_mps");
    t.put("/api/accounts/0b6f4c6e-0000-4000-8000-000000000000", json!({"name": "x"}))
        .await
        .assert_error(404, "not found");
}

#[tokio::test]
async fn accounts_list_pages_newest_first_with_a_total() {
    let t = TestStack::new().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(t.account("TIER_50").await);
    }
    let p1 = t.get("/api/accounts?page=1&limit=2").await;
    let d = p1.assert_ok(200);
    assert_eq!((d["total"].as_u64(), d["page"].as_u64(), d["limit"].as_u64()), (Some(5), Some(1), Some(2)));
    let mut seen: Vec<String> = Vec::new();
    for page in 1..=3 {
        let p = t.get(&format!("/api/accounts?page={page}&limit=2")).await;
        seen.extend(p.data()["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()));
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(sorted_seen, sorted_ids, "every account on exactly one page");
    let beyond = t.get("/api/accounts?page=9&limit=2").await;
    assert_eq!(beyond.assert_ok(200)["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_account_with_a_sending_campaign_is_not_deleted() {
    let t = TestStack::new().await;
    let (campaign, account, _) = t.campaign().await;
    t.set_campaign_status(&campaign, "sending").await;
    t.delete(&format!("/api/accounts/{account}")).await.assert_error(409, "sending or scheduled");
    t.get(&format!("/api/accounts/{account}")).await.assert_ok(200);
}
