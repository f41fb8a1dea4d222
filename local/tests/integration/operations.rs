//! What operators do around a campaign: send the failures that may pass again, follow its
//! progress, try a message first, follow Meta's news of its template, send a request again safely.

use std::time::Duration;

use local::fake_whatsapp::Injection;
use serde_json::{Value, json};

use crate::stack::{TestStack, phones, s};

fn counts(c: &Value) -> [u64; 4] {
    ["sent_count", "failed_count", "processed_count", "total_recipients"].map(|k| c[k].as_u64().unwrap_or(u64::MAX))
}

/// The campaign's counters as its recipients add them up: sent (a message WhatsApp took),
/// failed, processed (anything but pending and sending).
async fn recount(t: &TestStack, c: &str) -> [u64; 3] {
    let rs = t.recipients(c).await;
    let has = |r: &&Value, s: &[&str]| s.contains(&r["status"].as_str().unwrap_or_default());
    [
        rs.iter().filter(|r| r.get("sent_at").is_some()).count() as u64,
        rs.iter().filter(|r| has(r, &["failed"])).count() as u64,
        rs.iter().filter(|r| !has(r, &["pending", "sending"])).count() as u64,
    ]
}

#[tokio::test]
async fn retry_failed_sends_again_what_may_pass_and_never_a_permanent_refusal() {
    let t = TestStack::sending(2).await;
    t.post_statuses((20, 60, None), |_| {}).await;
    // A number whose sends fail with a transient error until the sender gives up; one that
    // WhatsApp takes and then fails with its per-user marketing limit; one undeliverable.
    let (flaky, limited, undeliverable) = ("+14155550901", "+14155550902", "+14155559002");
    t.fake.inject(Injection::error(131000).to(flaky).times(4));
    t.fake.inject(Injection::error(131049).to(limited).times(1).by_webhook());
    let mut numbers = phones(910, 3);
    numbers.extend([flaky, limited, undeliverable].map(String::from));
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    let retry = format!("/api/campaigns/{c}/retry-failed");
    t.post(&retry, json!({})).await.assert_error(409, "is draft");

    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed" && c["failed_count"] == 3).await;
    assert_eq!(counts(&done), [4, 3, 6, 6], "{done}");
    let limited_row = t.recipients(&c).await.into_iter().find(|r| r["phone_number"] == limited).unwrap();
    assert_eq!(limited_row["error_code"], 131049);
    let retry_after = limited_row["retry_after"].as_str().unwrap().to_string();

    // Codes that are never retried, and bodies that are not a selection, are refused.
    t.post(&retry, json!({"codes": [131026, 131000]})).await.assert_error(422, "131026 is never retried");
    t.post(&retry, json!({"codes": []})).await.assert_error(422, "codes");
    t.post(&retry, json!({"code": [131000]})).await.assert_error(422, "unknown field");

    // The transient failure goes back and is sent; the marketing limit waits for its day;
    // the undeliverable number stays failed.
    let answer = t.post(&retry, json!({})).await.assert_ok(200).clone();
    assert_eq!((answer["requeued"].as_u64(), answer["waiting"].as_u64()), (Some(1), Some(1)), "{answer}");
    assert_eq!(
        (answer["next_retry_at"].as_str(), answer["complete"].as_bool()),
        (Some(retry_after.as_str()), Some(true))
    );
    assert_eq!(answer["campaign"]["status"], "sending");
    assert_eq!(counts(&answer["campaign"]), [4, 2, 5, 6], "failed and processed down at once");
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(counts(&done), [5, 2, 6, 6], "{done}");
    let h = t.hits();
    assert_eq!((h[flaky], h[limited], h[undeliverable]), (5, 1, 1), "{h:?}");

    // Nothing more to put back now.
    let answer = t.post(&retry, json!({})).await.assert_ok(200).clone();
    assert_eq!((answer["requeued"].as_u64(), answer["campaign"]["status"].as_str()), (Some(0), Some("completed")));

    // A day later the marketing limit has passed: only that code is asked for.
    let day_ago = shared::domain::format_time(chrono::Utc::now() - chrono::Duration::hours(25));
    t.set_recipient(&c, limited, &[("failed_at", s(day_ago.as_str()))]).await;
    let answer = t.post(&retry, json!({"codes": [131049]})).await.assert_ok(200).clone();
    assert_eq!((answer["requeued"].as_u64(), answer["waiting"].as_u64()), (Some(1), Some(0)), "{answer}");
    // Its earlier message no longer counts as sent; the new one does.
    assert_eq!(counts(&answer["campaign"]), [4, 1, 5, 6]);
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(counts(&done), [5, 1, 6, 6], "{done}");
    assert_eq!(t.hits()[limited], 2);
    assert!(t.fake.wait_for_webhooks_idle(Duration::from_secs(10)).await);
    let done = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    let [sent, failed, processed, _] = counts(&done);
    assert_eq!(recount(&t, &c).await, [sent, failed, processed]);
}

#[tokio::test]
async fn retry_failed_on_a_paused_campaign_sends_them_when_it_resumes() {
    let t = TestStack::sending(2).await;
    let flaky = "+14155550921";
    t.fake.inject(Injection::error(131000).to(flaky).times(4));
    let (c, _) = t.campaign_with("TIER_100K", &[flaky.to_string()]).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(60), |c| c["status"] == "completed").await;
    // Paused by hand after the failure (as an operator pausing it would leave it).
    t.set_campaign_status(&c, "paused").await;
    let answer = t.post(&format!("/api/campaigns/{c}/retry-failed"), json!({})).await.assert_ok(200).clone();
    assert_eq!((answer["requeued"].as_u64(), answer["campaign"]["status"].as_str()), (Some(1), Some("paused")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.hits()[flaky], 4, "not sent while paused");
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(counts(&done), [1, 0, 1, 1], "{done}");
    assert_eq!(t.hits()[flaky], 5);
}

#[tokio::test]
async fn progress_shows_the_share_done_the_measured_rate_and_the_time_left_at_the_pace() {
    let t = TestStack::sending(2).await;
    // TIER_1K: 10 messages a second.
    let (c, _) = t.campaign_with("TIER_1K", &phones(950, 60)).await;
    let path = format!("/api/campaigns/{c}");
    let p = t.get(&path).await.data()["progress"].clone();
    assert_eq!(
        (p["percent"].as_f64(), p["rate_per_second"].as_f64(), p["eta_seconds"].as_u64()),
        (Some(0.0), Some(0.0), Some(6))
    );
    assert_eq!((p["counts"]["pending"].as_u64(), p["counts"]["sent"].as_u64()), (Some(60), Some(0)));
    t.post(&format!("{path}/start"), json!({})).await.assert_ok(200);
    // While it sends, the rate measured over its run so far is the pace.
    let sending = t
        .wait_for(&c, Duration::from_secs(30), |c| {
            c["status"] == "completed" || c["progress"]["rate_per_second"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    assert_eq!(sending["status"], "sending", "{sending}");
    let p = &sending["progress"];
    let rate = p["rate_per_second"].as_f64().unwrap();
    assert!((5.0..=12.0).contains(&rate), "{p}");
    let [percent, eta] = [p["percent"].as_f64().unwrap(), p["eta_seconds"].as_f64().unwrap()];
    assert!(percent > 0.0 && percent < 100.0 && eta < 6.0, "{p}");
    let counts = &p["counts"];
    let sum: u64 = ["pending", "sent", "failed"].iter().map(|s| counts[s].as_u64().unwrap()).sum();
    assert_eq!(sum, 60, "pending (sending among them), sent and failed are every recipient: {p}");
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    let p = &done["progress"];
    assert_eq!(
        (p["percent"].as_f64(), p["rate_per_second"].as_f64(), p["eta_seconds"].as_u64()),
        (Some(100.0), Some(0.0), Some(0))
    );
    assert_eq!(p["counts"]["sent"], 60);
}

#[tokio::test]
async fn a_test_send_goes_out_now_rendered_and_counts_nowhere() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_100K", &phones(970, 2)).await;
    let test = format!("/api/campaigns/{c}/test");
    let body = json!({"phone_number": "+14155550777", "fields": {"name": "Ann", "discount_code": "SAVE10"}});
    let sent = t.post(&test, body).await.assert_ok(200).clone();
    assert_eq!((sent["outcome"].as_str(), sent["phone_number"].as_str()), (Some("accepted"), Some("+14155550777")));
    assert!(sent["wamid"].as_str().unwrap().starts_with("wamid."), "{sent}");
    let requests = t.fake.requests();
    assert_eq!(requests.len(), 1);
    let posted = requests[0].body.to_string();
    assert!(posted.contains("\"Ann\"") && posted.contains("\"SAVE10\""), "{posted}");
    assert_eq!(sent["request"]["template"], requests[0].body["template"]);
    assert!(requests[0].body["biz_opaque_callback_data"].as_str().unwrap().starts_with("test/"));
    // Not a recipient: nothing counted, nothing added.
    let campaign = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!((campaign["total_recipients"].as_u64(), campaign["sent_count"].as_u64()), (Some(2), Some(0)));
    assert_eq!(t.recipients(&c).await.len(), 2);

    // WhatsApp's refusal is the answer.
    let undeliverable = json!({"phone_number": "+14155559002", "fields": {"name": "B", "discount_code": "C"}});
    let refused = t.post(&test, undeliverable).await.assert_ok(200).clone();
    assert_eq!((refused["outcome"].as_str(), refused["error_code"].as_i64()), (Some("rejected"), Some(131026)));
    assert!(refused["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{refused}");

    // What cannot be sent is refused before any request.
    let missing = json!({"phone_number": "+14155550778", "fields": {"name": "Ann"}});
    t.post(&test, missing).await.assert_error(422, "discount_code");
    t.post(&test, json!({"phone_number": "12", "fields": {}})).await.assert_error(422, "phone_number");
    t.post(&test, json!({"phone": "+14155550778"})).await.assert_error(422, "unknown field");
    t.post("/api/campaigns/00000000-0000-4000-8000-000000000000/test", json!({"phone_number": "+14155550778"}))
        .await
        .assert_error(404, "not found");
    assert_eq!(t.fake.requests().len(), 2, "only the two sends above reached WhatsApp");
}

#[tokio::test]
async fn a_template_meta_pauses_stops_its_sending_and_scheduled_campaigns_until_it_is_approved_again() {
    let t = TestStack::sending(2).await;
    t.post_statuses((20, 60, None), |_| {}).await;
    // TIER_1K: 10 a second, so 100 recipients take ten seconds.
    let (sending, account) = t.campaign_with("TIER_1K", &phones(980, 100)).await;
    let template =
        t.get(&format!("/api/campaigns/{sending}")).await.data()["template_id"].as_str().unwrap().to_string();
    let body = json!({"name": "Later", "account_id": account, "template_id": template,
                      "variable_mapping": {"1": "name", "2": "discount_code"}, "scheduled_at": "2099-01-01T00:00:00Z"});
    let scheduled = t.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string();
    t.add_recipients(&scheduled, &phones(1100, 3)).await;
    t.post(&format!("/api/campaigns/{scheduled}/start"), json!({})).await.assert_ok(200);
    assert!(t.schedule(&scheduled).await.is_some());
    // Another template's campaign of the account goes on.
    let other = t.another_campaign(&account, &phones(1200, 5)).await;
    t.post(&format!("/api/campaigns/{sending}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&sending, Duration::from_secs(30), |c| c["sent_count"].as_u64() > Some(0)).await;

    let paused = local::fake_whatsapp::TemplateNews {
        name: "offer".into(),
        language: "en_US".into(),
        event: Some("PAUSED".into()),
        reason: Some("LOW_QUALITY".into()),
        quality: None,
    };
    let post = t.fake.post_template_news(paused).await.unwrap();
    assert!(post.succeeded(), "{post:?}");
    // The sending campaign stops by the webhook, or by WhatsApp's 132015 if a send came first.
    let c = t.wait_for(&sending, Duration::from_secs(30), |c| c["status"] == "paused").await;
    let reason = c["pause_reason"].as_str().unwrap();
    assert!(reason.contains("132015") || reason.contains("PAUSED (LOW_QUALITY)"), "{reason}");
    // The scheduled one only by the webhook.
    let s = t.wait_for(&scheduled, Duration::from_secs(10), |c| c["status"] == "paused").await;
    let reason = s["pause_reason"].as_str().unwrap();
    assert!(reason.contains("offer (en_US) PAUSED (LOW_QUALITY)"), "{reason}");
    // Its schedule goes right after the pause (a paused campaign does not start by itself).
    t.eventually(Duration::from_secs(10), "the schedule is removed", || async {
        t.schedule(&scheduled).await.is_none()
    })
    .await;
    let tpl = t.get(&format!("/api/templates/{template}")).await.data().clone();
    assert_eq!((tpl["status"].as_str(), tpl["status_reason"].as_str()), (Some("PAUSED"), Some("LOW_QUALITY")));
    // Nothing more goes out for it, and it cannot be started while the template is paused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_then = t.fake.requests().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(t.fake.requests().len(), sent_then, "no sends after the pause");
    t.post(&format!("/api/campaigns/{sending}/start"), json!({})).await.assert_error(422, "PAUSED");
    t.post(&format!("/api/campaigns/{other}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&other, Duration::from_secs(30), |c| c["status"] == "completed").await;

    // A quality update is recorded; Meta reinstating the template lets the campaign resume.
    let quality = local::fake_whatsapp::TemplateNews {
        name: "offer".into(),
        language: "en_US".into(),
        quality: Some("RED".into()),
        ..Default::default()
    };
    assert!(t.fake.post_template_news(quality).await.unwrap().succeeded());
    let reinstated = local::fake_whatsapp::TemplateNews {
        name: "offer".into(),
        language: "en_US".into(),
        event: Some("REINSTATED".into()),
        ..Default::default()
    };
    assert!(t.fake.post_template_news(reinstated).await.unwrap().succeeded());
    t.eventually(Duration::from_secs(10), "the template is approved again", || async {
        let tpl = t.get(&format!("/api/templates/{template}")).await.data().clone();
        tpl["status"] == "APPROVED" && tpl["quality_score"] == "RED"
    })
    .await;
    t.post(&format!("/api/campaigns/{sending}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&sending, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!(done["sent_count"], 100);
}

/// A JSON POST with an `Idempotency-Key`: the answer, and whether it was replayed.
async fn post_once(t: &TestStack, path: &str, key: &str, body: &Value) -> (crate::stack::Answer, bool) {
    let headers = [("content-type", "application/json"), ("idempotency-key", key)];
    let res = t.raw(http::Method::POST, path, &headers, bytes::Bytes::from(body.to_string())).await;
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (crate::stack::answer(res), replayed)
}

#[tokio::test]
async fn a_request_sent_again_with_its_idempotency_key_is_answered_once_and_done_once() {
    let t = TestStack::sending(0).await;
    let account = t.account("TIER_100K").await;
    t.fake.register_account("106540352242922", "EAAG-secret-token");
    let template = t.template(&account, "offer", "APPROVED").await;
    let new = json!({"name": "Sale", "account_id": account, "template_id": template,
                     "variable_mapping": {"1": "name", "2": "discount_code"}});
    let key = uuid::Uuid::new_v4().to_string();
    let (first, replayed) = post_once(&t, "/api/campaigns", &key, &new).await;
    let id = first.assert_ok(201)["id"].as_str().unwrap().to_string();
    assert!(!replayed);
    let (again, replayed) = post_once(&t, "/api/campaigns", &key, &new).await;
    assert!(replayed);
    assert_eq!((again.status, &again.body), (first.status, &first.body), "the first answer, again");
    assert_eq!(t.get("/api/campaigns").await.data()["total"], 1, "created once");
    // The same key for another request is refused; a key that is not one is a 400.
    let other = json!({"name": "Other", "account_id": account, "template_id": template,
                       "variable_mapping": {"1": "name", "2": "discount_code"}});
    post_once(&t, "/api/campaigns", &key, &other).await.0.assert_error(422, "another request");
    post_once(&t, "/api/campaigns", "", &other).await.0.assert_error(400, "Idempotency-Key");
    post_once(&t, "/api/campaigns", &"k".repeat(256), &other).await.0.assert_error(400, "Idempotency-Key");

    // An import sent twice adds its rows once (the second is not a duplicates report).
    let rows = json!({"recipients": [{"phone_number": "+14155550991", "name": "A", "discount_code": "1"},
                                     {"phone_number": "+14155550992", "name": "B", "discount_code": "2"}]});
    let import = format!("/api/campaigns/{id}/recipients/import");
    let (first, _) = post_once(&t, &import, "import-1", &rows).await;
    assert_eq!(first.assert_ok(200)["imported"], 2);
    let (again, replayed) = post_once(&t, &import, "import-1", &rows).await;
    assert!(replayed && again.body == first.body, "{:?}", again.body);
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 2);

    // A test send sent twice reaches WhatsApp once.
    let test = json!({"phone_number": "+14155550993", "fields": {"name": "Ann", "discount_code": "X"}});
    let test_path = format!("/api/campaigns/{id}/test");
    let (first, _) = post_once(&t, &test_path, "test-1", &test).await;
    let (again, replayed) = post_once(&t, &test_path, "test-1", &test).await;
    assert!(replayed);
    assert_eq!(again.data()["wamid"], first.data()["wamid"]);
    assert_eq!(t.fake.requests().len(), 1);

    // A start sent twice starts once: the second gets the first answer, not a 409.
    let start = format!("/api/campaigns/{id}/start");
    let (first, _) = post_once(&t, &start, "start-1", &json!({})).await;
    first.assert_ok(200);
    let (again, replayed) = post_once(&t, &start, "start-1", &json!({})).await;
    assert!(replayed && again.status == 200, "{:?}", again.body);
    assert_eq!(t.queued("DispatchQueue").await, 1, "one dispatch queued");

    // While the first is still being handled, a repeat is told to come back; once the
    // first's claim has run out without an answer (it stopped half-way), a repeat runs.
    let slot = "POST /api/campaigns";
    let pk = format!("IDEMPOTENCY#{key}");
    t.set(pk.clone(), slot, &[("state", s("in_progress"))]).await;
    t.remove(pk.clone(), slot, &["status", "body"]).await;
    let future = (chrono::Utc::now().timestamp() + 60).to_string();
    t.set(pk.clone(), slot, &[("locked_until", aws_sdk_dynamodb::types::AttributeValue::N(future))]).await;
    post_once(&t, "/api/campaigns", &key, &new).await.0.assert_error(409, "still being handled");
    let past = (chrono::Utc::now().timestamp() - 1).to_string();
    t.set(pk, slot, &[("locked_until", aws_sdk_dynamodb::types::AttributeValue::N(past))]).await;
    let (taken_over, replayed) = post_once(&t, "/api/campaigns", &key, &new).await;
    assert!(!replayed);
    taken_over.assert_ok(201);
}

#[tokio::test]
async fn an_opt_out_keyword_sent_by_a_person_opts_them_out_and_an_opt_in_keyword_takes_it_back() {
    let t = TestStack::sending(2).await;
    t.post_statuses((20, 60, None), |_| {}).await;
    let (_, account) = t.campaign_with("TIER_100K", &[]).await;
    let changed = t.put(&format!("/api/accounts/{account}"), json!({"opt_out_keywords": ["STOP", "Baja"]})).await;
    assert_eq!(changed.assert_ok(200)["opt_out_keywords"], json!(["STOP", "Baja"]));
    assert_eq!(changed.data()["opt_in_keywords"], json!(["START"]), "the default stays");
    t.put(&format!("/api/accounts/{account}"), json!({"opt_in_keywords": ["baja"]})).await.assert_error(422, "both");
    let says = |from: &str, text: &str, button: bool| local::fake_whatsapp::InboundText {
        from: from.into(),
        phone_number_id: "106540352242922".into(),
        text: text.into(),
        button,
        context: None,
    };
    let (texted, pressed, chatted) = ("+14155550601", "+14155550602", "+14155550603");
    for m in [says(texted, "  baja\n", false), says(pressed, "STOP", true), says(chatted, "stop the music", false)] {
        assert!(t.fake.post_inbound(m).await.unwrap().succeeded());
    }
    // A MARKETING campaign's import leaves out who opted out.
    let numbers: Vec<String> = [texted, pressed, chatted].map(String::from).to_vec();
    let opted_out = || imported_opted_out(&t, &account, &numbers);
    t.eventually(Duration::from_secs(10), "two opt-outs recorded", || async { opted_out().await == Some(2) }).await;
    assert!(t.fake.post_inbound(says(texted, "Start", false)).await.unwrap().succeeded());
    t.eventually(Duration::from_secs(10), "one opt-out taken back", || async { opted_out().await == Some(1) }).await;
}

/// How many of `numbers` a new MARKETING campaign of the account reports as opted out.
async fn imported_opted_out(t: &TestStack, account: &str, numbers: &[String]) -> Option<u64> {
    let c = t.another_campaign(account, &[]).await;
    let mut rows = String::from("phone_number,name,discount_code\n");
    for n in numbers {
        rows.push_str(&format!("{n},A,B\n"));
    }
    t.post_csv(&format!("/api/campaigns/{c}/recipients/import"), rows).await.data()["opted_out"].as_u64()
}

#[tokio::test]
async fn billable_messages_are_counted_once_per_category_and_priced_at_the_accounts_prices() {
    let t = TestStack::sending(2).await;
    // Every status twice and out of order: each message is still billed once.
    t.post_statuses((20, 60, Some(120)), |config| (config.duplicate, config.shuffle) = (true, true)).await;
    let (c, account) = t.campaign_with("TIER_100K", &phones(1300, 6)).await;
    let prices =
        json!({"marketing": {"amount": 0.025, "currency": "usd"}, "utility": {"amount": 0.004, "currency": "USD"}});
    let changed = t.put(&format!("/api/accounts/{account}"), json!({"prices": prices})).await;
    assert_eq!(changed.assert_ok(200)["prices"]["marketing"], json!({"amount": 0.025, "currency": "USD"}));
    let mixed =
        json!({"marketing": {"amount": 0.02, "currency": "USD"}, "utility": {"amount": 0.01, "currency": "EUR"}});
    t.put(&format!("/api/accounts/{account}"), json!({"prices": mixed}))
        .await
        .assert_error(422, "every price must be in USD");
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed" && c["read_count"] == 6).await;
    assert!(t.fake.wait_for_webhooks_idle(Duration::from_secs(10)).await);
    let done = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!(done["billable"], json!({"marketing": 6, "utility": 0, "authentication": 0, "service": 0}), "{done}");
    assert_eq!(
        done["cost"],
        json!({"amount": 0.15, "currency": "USD", "by_category": {"marketing": 0.15, "utility": 0.0}})
    );
    // Listings show the counts; the cost is the campaign's own answer's.
    let listed = t.get("/api/campaigns").await.data()["items"][0].clone();
    assert_eq!((listed["billable"]["marketing"].as_u64(), listed.get("cost")), (Some(6), None));
}

#[tokio::test]
async fn answers_to_a_campaign_message_count_once_as_replies_and_button_presses_as_clicks() {
    let t = TestStack::sending(2).await;
    t.post_statuses((20, 60, None), |_| {}).await;
    let numbers = phones(1400, 4);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed" && c["delivered_count"] == 4).await;
    assert!(t.fake.wait_for_webhooks_idle(Duration::from_secs(10)).await);
    let campaign = t.app.db.get_campaign(&c).await.unwrap().unwrap();
    let phones: Vec<shared::domain::phone::Phone> =
        numbers.iter().map(|n| shared::domain::phone::Phone::e164(n).unwrap()).collect();
    let sent = t.app.db.recipients(&campaign, &phones).await.unwrap();
    let wamid = |n: &str| sent.iter().find(|r| r.phone_number.as_str() == n).unwrap().wamid.clone().unwrap();
    // A week-old delivery is past the 72 hours.
    let long_ago = shared::domain::format_time(chrono::Utc::now() - chrono::Duration::days(7));
    t.set_recipient(&c, &numbers[3], &[("delivered_at", s(long_ago.as_str()))]).await;
    let says = |from: &str, text: &str, button: bool, context: Option<String>| local::fake_whatsapp::InboundText {
        from: from.into(),
        phone_number_id: "106540352242922".into(),
        text: text.into(),
        button,
        context,
    };
    let answers = [
        says(&numbers[0], "Thanks!", false, Some(wamid(&numbers[0]))),
        says(&numbers[0], "Thanks!", false, Some(wamid(&numbers[0]))), // Meta delivers it again
        says(&numbers[1], "Yes please", true, Some(wamid(&numbers[1]))),
        says(&numbers[2], "Who is this?", false, None), // answers no message
        says(&numbers[3], "Late", false, Some(wamid(&numbers[3]))),
    ];
    for a in answers {
        assert!(t.fake.post_inbound(a).await.unwrap().succeeded());
    }
    let done = t.wait_for(&c, Duration::from_secs(10), |c| c["replied_count"] == 2 && c["clicked_count"] == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = t.get(&format!("/api/campaigns/{c}")).await.data().clone();
    assert_eq!((again["replied_count"].as_u64(), again["clicked_count"].as_u64()), (Some(2), Some(1)), "{done}");
    let rs = t.recipients(&c).await;
    let row = |n: &str| rs.iter().find(|r| r["phone_number"] == n).unwrap().clone();
    assert!(row(&numbers[0])["replied_at"].is_string() && row(&numbers[0]).get("clicked_at").is_none());
    assert_eq!(
        (row(&numbers[1])["clicked_button"].as_str(), row(&numbers[1])["replied_at"].is_string()),
        (Some("Yes please"), true)
    );
    assert!(row(&numbers[2]).get("replied_at").is_none() && row(&numbers[3]).get("replied_at").is_none());
}
