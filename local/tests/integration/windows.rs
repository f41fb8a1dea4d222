//! Send windows: a campaign's `send_window` and an account's `default_timezone` are checked,
//! stored, shown and cleared; recipients outside their window wait and go when it opens.

use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::{Value, json};
use shared::domain::zone::Zone;

use crate::stack::{TestStack, phones};

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

/// A window of `start`–`end` (UTC instants) as `HH:MM` in `zone`.
fn window_in(zone: &str, start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>, tz: &str) -> Value {
    let zone = Zone::named(zone).expect("a zone of the database");
    let hhmm = |t: chrono::DateTime<Utc>| zone.local(t).format("%H:%M").to_string();
    json!({"start": hhmm(start), "end": hhmm(end), "timezone": tz})
}

#[tokio::test]
async fn recipients_wait_for_a_closed_window_and_go_when_it_opens() {
    // Not timed: it runs beside the other tests rather than alone among the sending ones.
    let t = TestStack::new().await;
    t.spawn_workers(2);
    let (c, _) = t.campaign_with("TIER_1K", &phones(5000, 20)).await;
    // A window in UTC that opens at a whole minute at least 20 s from now, for ten minutes.
    let now = Utc::now();
    let mut opens = (now + chrono::Duration::seconds(60)).with_second(0).unwrap().with_nanosecond(0).unwrap();
    if opens - now < chrono::Duration::seconds(20) {
        opens += chrono::Duration::seconds(60);
    }
    let window = window_in("UTC", opens, opens + chrono::Duration::minutes(10), "UTC");
    t.put(&format!("/api/campaigns/{c}"), json!({"send_window": window})).await.assert_ok(200);
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    // Closed: nothing goes, the campaign stays sending with everyone pending.
    let before = (opens - Utc::now()).to_std().unwrap().saturating_sub(Duration::from_secs(2));
    tokio::time::sleep(before).await;
    let waiting = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!((waiting["status"].as_str(), waiting["sent_count"].as_u64()), (Some("sending"), Some(0)), "{waiting}");
    assert_eq!(t.hits().len(), 0, "nothing is sent before the window opens");
    // Open: all of them go, and the campaign completes.
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    assert_eq!(done["sent_count"], 20, "{done}");
    let completed = chrono::DateTime::parse_from_rfc3339(done["completed_at"].as_str().unwrap()).unwrap();
    assert!(completed >= opens, "completed at {completed}, the window opened at {opens}");
}

#[tokio::test]
async fn with_recipient_zones_each_number_waits_for_its_own_window() {
    // Not timed: it runs beside the other tests rather than alone among the sending ones.
    let t = TestStack::new().await;
    t.spawn_workers(2);
    // Open now in London (from an hour ago for three hours). Tokyo is 8 or 9 hours ahead and Los
    // Angeles 7 or 8 behind (the US and UK change clocks on different weeks): at any hour their
    // clocks stand at least 6 hours outside the window, so both are closed.
    let now = Utc::now();
    let window = window_in(
        "Europe/London",
        now - chrono::Duration::minutes(60),
        now + chrono::Duration::minutes(120),
        "recipient",
    );
    let (c, _) = t.campaign_with("TIER_1K", &[]).await;
    t.put(&format!("/api/campaigns/{c}"), json!({"send_window": window})).await.assert_ok(200);
    let [london, tokyo, us_london, us] = ["+442079460123", "+81312345678", "+14155550100", "+14155550101"];
    let recipients = json!({"recipients": [
        {"phone_number": london, "name": "A", "discount_code": "X"},
        {"phone_number": tokyo, "name": "B", "discount_code": "X"},
        // The field wins over the area code; without one, 415 is Los Angeles by its area code.
        {"phone_number": us_london, "name": "C", "discount_code": "X", "timezone": "Europe/London"},
        {"phone_number": us, "name": "D", "discount_code": "X"},
    ]});
    t.post(&format!("/api/campaigns/{c}/recipients/import"), recipients).await.assert_ok(200);
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let sent = t.wait_for(&c, Duration::from_secs(30), |c| c["sent_count"] == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hits = t.hits();
    assert_eq!((hits.get(london), hits.get(us_london), hits.len()), (Some(&1), Some(&1), 2), "{hits:?}");
    let now = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!(
        (now["status"].as_str(), now["progress"]["counts"]["pending"].as_u64()),
        (Some("sending"), Some(2)),
        "{sent}"
    );
    t.post(&format!("/api/campaigns/{c}/cancel"), json!({})).await.assert_ok(200);
}
