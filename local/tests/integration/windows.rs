//! Send windows through the API: a campaign's `send_window` and an account's
//! `default_timezone` are checked, stored, shown and cleared.

use serde_json::json;

use crate::stack::TestStack;

#[tokio::test]
async fn a_send_window_is_stored_shown_changed_and_cleared_and_bad_ones_are_422() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let template = t.template(&account, "offer", "APPROVED").await;
    let body = |window: serde_json::Value| {
        json!({"name": "Evening sale", "account_id": account, "template_id": template,
               "variable_mapping": {"1": "name", "2": "discount_code"}, "send_window": window})
    };

    let window = json!({"start": "18:30", "end": "21:00", "days": ["sat", "mon"], "timezone": "recipient"});
    let created = t.post("/api/campaigns", body(window)).await;
    let id = created.assert_ok(201)["id"].as_str().unwrap().to_string();
    let shown = json!({"start": "18:30", "end": "21:00", "days": ["mon", "sat"], "timezone": "recipient"});
    assert_eq!(created.data()["send_window"], shown);
    let path = format!("/api/campaigns/{id}");
    assert_eq!(t.get(&path).await.assert_ok(200)["send_window"], shown);

    // PUT: a new window (days left out: every day), other changes keep it, null removes it.
    let overnight = json!({"start": "22:00", "end": "06:00", "timezone": "America/New_York"});
    let updated = t.put(&path, json!({"send_window": overnight})).await;
    let every_day = json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
    assert_eq!(updated.assert_ok(200)["send_window"]["days"], every_day);
    t.put(&path, json!({"name": "Night sale"})).await.assert_ok(200);
    let got = t.get(&path).await;
    assert_eq!(got.assert_ok(200)["send_window"]["timezone"], "America/New_York", "{}", got.body);
    let cleared = t.put(&path, json!({"send_window": null})).await;
    assert!(cleared.assert_ok(200).get("send_window").is_none(), "{}", cleared.body);
    assert!(t.get(&path).await.assert_ok(200).get("send_window").is_none());
    let item = t.item(format!("CAMPAIGN#{id}"), "#CAMPAIGN").await.unwrap();
    assert!(!item.contains_key("send_window"), "removed from the item");

    // Bad windows, on create and on PUT: 422 naming the field.
    let bad = [
        (json!({"start": "9:00", "end": "20:00", "timezone": "UTC"}), "send_window.start: '9:00' is not a time of day"),
        (json!({"start": "09:00", "end": "24:00", "timezone": "UTC"}), "send_window.end: '24:00' is not a time of day"),
        (
            json!({"start": "09:00", "end": "20:00", "timezone": "Europe/Atlantis"}),
            "send_window.timezone: 'Europe/Atlantis' is not an IANA time zone",
        ),
        (json!({"start": "09:00", "end": "20:00", "days": [], "timezone": "UTC"}), "send_window.days: must name"),
        (json!({"start": "09:00", "end": "20:00", "days": ["mo"], "timezone": "UTC"}), "send_window.days: 'mo'"),
        (json!({"start": "09:00", "end": "09:00", "timezone": "UTC"}), "send_window: end must differ from start"),
        (json!({"start": "09:00", "end": "20:00"}), "send_window.timezone is required"),
    ];
    for (window, words) in bad {
        t.post("/api/campaigns", body(window.clone())).await.assert_error(422, words);
        t.put(&path, json!({"send_window": window})).await.assert_error(422, words);
    }
    assert_eq!(t.get("/api/campaigns").await.assert_ok(200)["total"], 1, "no bad campaign was stored");
}

#[tokio::test]
async fn an_accounts_default_timezone_is_an_iana_zone() {
    let t = TestStack::new().await;
    let body = json!({"name": "Acme", "phone_number_id": "1065", "business_account_id": "1022",
                      "access_token": "EAAG", "messaging_limit_tier": "TIER_1K", "default_timezone": "Asia/Kolkata"});
    let created = t.post("/api/accounts", body.clone()).await;
    let id = created.assert_ok(201)["id"].as_str().unwrap().to_string();
    let path = format!("/api/accounts/{id}");
    assert_eq!(t.get(&path).await.assert_ok(200)["default_timezone"], "Asia/Kolkata");
    let changed = t.put(&path, json!({"default_timezone": "America/Sao_Paulo"})).await;
    assert_eq!(changed.assert_ok(200)["default_timezone"], "America/Sao_Paulo");
    t.put(&path, json!({"default_timezone": "Kolkata"}))
        .await
        .assert_error(422, "default_timezone: 'Kolkata' is not an IANA time zone");
    assert_eq!(t.get(&path).await.assert_ok(200)["default_timezone"], "America/Sao_Paulo");
    let cleared = t.put(&path, json!({"default_timezone": null})).await;
    assert!(cleared.assert_ok(200).get("default_timezone").is_none(), "{}", cleared.body);
    let mut bad = body;
    bad["default_timezone"] = json!("UTC+5");
    t.post("/api/accounts", bad).await.assert_error(422, "default_timezone: 'UTC+5' is not an IANA time zone");
}
