//! Delivery tracking through `/webhooks/whatsapp`: the handshake, signatures, statuses queued
//! and applied in batches to recipients with exact counters under duplicates, disorder,
//! redelivery and store failures, statuses that come before their send is recorded or for a
//! send whose outcome was unknown, opt-outs, and the campaign events on the bus.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::future::join_all;
use http::Method;
use serde_json::{Value, json};

use shared::domain::id::Id;
use shared::domain::phone::Phone;
use shared::domain::recipient::{RECIPIENT_SHARDS, RecipientKey};

use crate::stack::{APP_SECRET, TestStack, VERIFY_TOKEN, phones, recipient_pk, recipient_status_pk, s};

const PHONE_NUMBER_ID: &str = "106540352242922";

fn notification(field: &str, value: Value) -> String {
    json!({ "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": [{ "field": field, "value": value }] }] })
    .to_string()
}

fn statuses(list: Vec<Value>) -> String {
    notification(
        "messages",
        json!({ "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
                "statuses": list }),
    )
}

/// One status as Meta sends it; `callback` is what the sender put in biz_opaque_callback_data.
fn status(wamid: &str, status: &str, secs: i64, callback: Option<String>) -> Value {
    let mut v = json!({ "id": wamid, "status": status, "timestamp": secs.to_string(), "recipient_id": "14155550100" });
    if let Some(c) = callback {
        v["biz_opaque_callback_data"] = json!(c);
    }
    if status == "failed" {
        v["errors"] = json!([{ "code": 131026, "title": "Message undeliverable",
                               "message": "Message undeliverable", "error_data": { "details": "not on WhatsApp" } }]);
    }
    v
}

/// A campaign whose recipients were all accepted by WhatsApp: returns the campaign and each
/// recipient's (phone, wamid), written as the sender records them.
async fn sent_campaign(t: &TestStack, numbers: &[String]) -> (String, String, Vec<(String, String)>) {
    let (c, account) = t.campaign_with("TIER_1K", numbers).await;
    let sent: Vec<(String, String)> =
        numbers.iter().map(|p| (p.clone(), format!("wamid.{}", uuid::Uuid::new_v4().simple()))).collect();
    for chunk in sent.chunks(50) {
        let c = &c;
        join_all(chunk.iter().map(|(phone, wamid)| async move {
            let values = [
                ("status", s("sent")),
                ("wamid", s(wamid)),
                ("sent_at", s("2026-01-01T10:00:00Z")),
                ("GSI2PK", s(&recipient_status_pk(c, phone, "sent"))),
                ("GSI3PK", s(&format!("WAMID#{wamid}"))),
                ("GSI3SK", s("R")),
            ];
            t.set_recipient(c, phone, &values).await;
        }))
        .await;
    }
    let n = aws_sdk_dynamodb::types::AttributeValue::N(numbers.len().to_string());
    t.set(format!("CAMPAIGN#{c}"), "#CAMPAIGN", &[("sent_count", n.clone()), ("processed_count", n)]).await;
    t.set_campaign_status(&c, "completed").await;
    (c, account, sent)
}

fn callback(c: &str, phone: &str) -> Option<String> {
    let key = RecipientKey::new(&Id::stored(c.to_string()), RECIPIENT_SHARDS, &Phone::stored(phone.to_string()));
    Some(key.callback())
}

fn counters(c: &Value) -> [u64; 3] {
    ["delivered_count", "read_count", "failed_count"].map(|k| c[k].as_u64().unwrap_or(u64::MAX))
}

/// The counters the recipients' statuses add up to.
async fn recount(t: &TestStack, c: &str) -> [u64; 3] {
    let rs = t.recipients(c).await;
    let is = |r: &&Value, s: &[&str]| s.contains(&r["status"].as_str().unwrap_or_default());
    [
        rs.iter().filter(|r| is(r, &["delivered", "read"])).count() as u64,
        rs.iter().filter(|r| is(r, &["read"])).count() as u64,
        rs.iter().filter(|r| is(r, &["failed"])).count() as u64,
    ]
}

async fn campaign(t: &TestStack, c: &str) -> Value {
    t.get(&format!("/api/campaigns/{c}")).await.assert_ok(200).clone()
}

#[tokio::test]
async fn the_verification_handshake_answers_the_challenge_only_for_the_verify_token() {
    let t = TestStack::new().await;
    let get = |query: String| {
        let t = &t;
        async move { t.request(Method::GET, &format!("/webhooks/whatsapp?{query}"), &[], Bytes::new()).await }
    };
    let ok = get(format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.body(), "1158201444");
    assert!(ok.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));

    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_string(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "hub.mode=subscribe&hub.challenge=1".to_string(),
    ] {
        let refused = get(query.clone()).await;
        assert_eq!(refused.status(), 403, "{query}");
        let body: Value = serde_json::from_str(refused.body()).unwrap();
        assert_eq!((body["status"].as_str(), body["data"].is_null()), (Some("error"), true));
        assert!(body["message"].as_str().unwrap().contains("hub.verify_token"));
    }
    let no_challenge = get(format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}")).await;
    assert_eq!(no_challenge.status(), 400);
}

#[tokio::test]
async fn signatures_are_checked_over_the_exact_bytes_and_nothing_is_queued_without_one() {
    let t = TestStack::new().await;
    let numbers = phones(300, 2);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    // Meta escapes non-ASCII in the JSON it signs; the signature is over those bytes.
    let value = json!({ "messaging_product": "whatsapp",
                        "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
                        "contacts": [{ "profile": { "name": "Zoë Åström 😀" }, "wa_id": "14155550300" }],
                        "statuses": [status(&sent[0].1, "delivered", 1_764_000_000, callback(&c, &sent[0].0))] });
    let escaped =
        notification("messages", value).replace('ë', "\\u00eb").replace('Å', "\\u00c5").replace('ö', "\\u00f6");
    let escaped = escaped.replace('😀', "\\ud83d\\ude00");
    assert!(escaped.is_ascii() && escaped.contains("Zo\\u00eb"));
    let signature = shared::adapters::signature::sign(APP_SECRET.as_bytes(), escaped.as_bytes());
    let post = |body: String, signature: Option<String>| {
        let t = &t;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(s) = signature.as_deref() {
                headers.push(("x-hub-signature-256", s));
            }
            t.request(Method::POST, "/webhooks/whatsapp", &headers, Bytes::from(body)).await
        }
    };

    // The same JSON with the characters unescaped is other bytes: refused, and so are a
    // missing signature and one made with another secret.
    let unescaped: Value = serde_json::from_str(&escaped).unwrap();
    let wrong_secret = shared::adapters::signature::sign(b"another secret", escaped.as_bytes());
    for (body, sig, words) in [
        (unescaped.to_string(), Some(signature.clone()), "does not match"),
        (escaped.clone(), None, "missing"),
        (escaped.clone(), Some(wrong_secret), "does not match"),
        (escaped.clone(), Some("sha256=".to_string()), "does not match"),
    ] {
        let res = post(body, sig).await;
        assert_eq!(res.status(), 401, "{}", res.body());
        assert!(res.body().contains(words) && res.body().contains("X-Hub-Signature-256"), "{}", res.body());
    }
    assert_eq!(t.queued("StatusQueue").await, 0, "nothing queued for a refused signature");
    assert_eq!(counters(&campaign(&t, &c).await), [0, 0, 0]);
    assert!(t.recipients(&c).await.iter().all(|r| r["status"] == "sent"));

    let res = post(escaped, Some(signature)).await;
    assert_eq!(res.status(), 200, "{}", res.body());
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["data"], json!({"statuses": 1, "preferences": 0, "templates": 0, "messages": 0, "ignored": 0}));
    assert_eq!(t.queued("StatusQueue").await, 1, "queued, not applied in the request");
    assert_eq!(counters(&campaign(&t, &c).await), [0, 0, 0]);
    assert_eq!(t.apply_statuses().await.recipients_changed, 1);
    assert_eq!(counters(&campaign(&t, &c).await), [1, 0, 0]);
}

#[tokio::test]
async fn a_thousand_statuses_in_one_post_are_applied_with_exact_counters() {
    let t = TestStack::new().await;
    let numbers = phones(1000, 1000);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    // Most carry the sender's callback key, one in fifty is found by its wamid; 200 are read
    // without a delivered status, 100 failed.
    let list: Vec<Value> = sent
        .iter()
        .enumerate()
        .map(|(i, (phone, wamid))| {
            let cb = if i % 50 == 0 { None } else { callback(&c, phone) };
            let st = match i {
                0..200 => "read",
                200..300 => "failed",
                _ => "delivered",
            };
            status(wamid, st, 1_764_000_000 + i as i64, cb)
        })
        .collect();
    let body = statuses(list);
    assert!(body.len() > 150_000, "a payload of realistic size ({} bytes)", body.len());
    let (answer, applied) = t.webhook_applied(&body).await;
    assert_eq!(answer.assert_ok(200)["statuses"], 1000);
    assert_eq!((applied.statuses, applied.recipients_changed), (1000, 1000));
    let after = campaign(&t, &c).await;
    assert_eq!(counters(&after), [900, 200, 100]);
    assert_eq!(recount(&t, &c).await, counters(&after));
    // The same payload again (Meta retries) changes nothing.
    let (_, again) = t.webhook_applied(&body).await;
    assert_eq!(again.recipients_changed, 0);
    assert_eq!(counters(&campaign(&t, &c).await), [900, 200, 100]);
    let read = t.get(&format!("/api/campaigns/{c}/recipients?status=read&limit=1")).await.assert_ok(200).clone();
    assert_eq!(read["total"], 200);
    // Delivered (not read): 700, found by a filter over the campaign's recipients, page by page.
    let page = |n: u32| {
        let (t, path) = (&t, format!("/api/campaigns/{c}/recipients?status=delivered&limit=100&page={n}"));
        async move { t.get(&path).await }
    };
    let seventh = page(7).await.assert_ok(200).clone();
    assert_eq!((seventh["total"].as_u64(), seventh["items"].as_array().unwrap().len()), (Some(700), 100));
    assert!(seventh["items"].as_array().unwrap().iter().all(|r| r["status"] == "delivered"));
    let first = page(1).await.assert_ok(200).clone();
    assert_ne!(first["items"][0]["id"], seventh["items"][0]["id"], "pages differ");
    assert_eq!(page(8).await.assert_ok(200)["items"].as_array().unwrap().len(), 0);
    let r = &read["items"][0];
    assert!(r["read_at"].is_string() && r["delivered_at"] == r["read_at"], "read implies delivered: {r}");
    let failed = t.get(&format!("/api/campaigns/{c}/recipients?status=failed&limit=1")).await.assert_ok(200).clone();
    let f = &failed["items"][0];
    assert_eq!((f["error_code"].as_i64(), f["error_message"].as_str()), (Some(131026), Some("not on WhatsApp")));
    assert!(f["failed_at"].is_string());
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    (0..items.len())
        .flat_map(|i| {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            permutations(&rest).into_iter().map(move |mut p| {
                p.insert(0, first.clone());
                p
            })
        })
        .collect()
}

#[tokio::test]
async fn duplicates_and_every_order_of_statuses_leave_counters_equal_to_a_recount() {
    let t = TestStack::new().await;
    let kinds = ["sent", "delivered", "read", "failed"];
    let orders = permutations(&kinds);
    assert_eq!(orders.len(), 24);
    // One recipient per order of the four statuses, and one per order of the three without
    // read (so that failed and delivered meet without a read).
    let without_read = permutations(&["sent", "delivered", "failed"]);
    let all_orders: Vec<Vec<&str>> = orders.into_iter().chain(without_read).collect();
    let numbers = phones(2000, all_orders.len() as u32);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;

    // Each recipient's statuses go out as separate POSTs in its order; the recipients'
    // sequences run concurrently, and every POST is sent twice.
    let sequences = sent.iter().zip(&all_orders).map(|((phone, wamid), order)| {
        let t = &t;
        let c = &c;
        async move {
            for (i, kind) in order.iter().enumerate() {
                let secs = 1_764_000_000 + kinds.iter().position(|k| k == kind).unwrap() as i64;
                let cb = if i % 2 == 0 { callback(c, phone) } else { None };
                let body = statuses(vec![status(wamid, kind, secs, cb)]);
                t.webhook(&body).await.assert_ok(200);
                t.webhook(&body).await.assert_ok(200);
            }
        }
    });
    join_all(sequences).await;

    let after = campaign(&t, &c).await;
    assert_eq!(recount(&t, &c).await, counters(&after), "{after}");
    // Whatever the order: read wins where there was a read, delivered supersedes failed.
    assert_eq!(counters(&after), [30, 24, 0]);
    let rs = t.recipients(&c).await;
    for r in &rs {
        let expected = if r["read_at"].is_string() { "read" } else { "delivered" };
        assert_eq!(r["status"], expected, "{r}");
        assert_eq!(r["delivered_at"], "2025-11-24T16:00:01Z", "the delivered timestamp is Meta's: {r}");
        assert!(r.get("error_code").is_none() && r.get("failed_at").is_none(), "{r}");
    }
    assert_eq!(rs.iter().filter(|r| r["status"] == "read").count(), 24);
}

#[tokio::test]
async fn failed_after_sent_counts_once_and_a_later_failure_never_undoes_a_delivery() {
    let t = TestStack::new().await;
    let numbers = phones(2100, 3);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let (a, b, d) = (&sent[0], &sent[1], &sent[2]);
    let body = statuses(vec![
        status(&a.1, "failed", 1_764_000_005, callback(&c, &a.0)),
        status(&b.1, "delivered", 1_764_000_001, callback(&c, &b.0)),
        status(&d.1, "sent", 1_764_000_000, callback(&c, &d.0)),
    ]);
    t.webhook(&body).await.assert_ok(200);
    t.webhook(&statuses(vec![status(&b.1, "failed", 1_764_000_009, None)])).await.assert_ok(200);
    let after = campaign(&t, &c).await;
    assert_eq!(counters(&after), [1, 0, 1]);
    assert_eq!(after["sent_count"], 3, "accepted messages stay counted as sent");
    assert_eq!(recount(&t, &c).await, [1, 0, 1]);
    let rs = t.recipients(&c).await;
    let by_phone = |p: &str| rs.iter().find(|r| r["phone_number"] == p).unwrap().clone();
    assert_eq!(by_phone(&a.0)["status"], "failed");
    assert_eq!(by_phone(&a.0)["failed_at"], "2025-11-24T16:00:05Z");
    assert_eq!(by_phone(&b.0)["status"], "delivered");
    assert_eq!(by_phone(&d.0)["status"], "sent");
}

#[tokio::test]
async fn unknown_wamids_and_other_fields_are_accepted_and_change_nothing() {
    let t = TestStack::new().await;
    let numbers = phones(2200, 1);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let inbound = notification(
        "messages",
        json!({ "messaging_product": "whatsapp", "metadata": { "phone_number_id": PHONE_NUMBER_ID },
                "contacts": [{ "profile": { "name": "Zoë" }, "wa_id": "14155552200" }],
                "messages": [{ "from": "14155552200", "id": "wamid.in", "timestamp": "1764000000",
                               "type": "text", "text": { "body": "Hello, is this the sale?" } }],
                "statuses": [status("wamid.unknown", "delivered", 1_764_000_000, None),
                             status("wamid.other", "read", 1_764_000_000, Some(format!("{c}/+14155559999"))),
                             status(&sent[0].1, "played", 1_764_000_000, None)] }),
    );
    let (answer, applied) = t.webhook_applied(&inbound).await;
    // The inbound text is checked for opt-out keywords (it is none); `played` is ignored.
    assert_eq!((answer.assert_ok(200)["ignored"].as_u64(), answer.data()["messages"].as_u64()), (Some(1), Some(1)));
    assert_eq!((applied.unknown, applied.ignored, applied.opt_outs), (2, 1, 0), "{applied:?}");
    let template_update = notification("message_template_status_update", json!({ "event": "APPROVED" }));
    t.webhook(&template_update).await.assert_ok(200);
    t.webhook(r#"{"object":"whatsapp_business_account"}"#).await.assert_ok(200);
    t.webhook("not json").await.assert_error(400, "not a WhatsApp notification");
    assert_eq!(counters(&campaign(&t, &c).await), [0, 0, 0]);
    assert_eq!(t.recipients(&c).await[0]["status"], "sent");
}

#[tokio::test]
async fn a_store_failure_loses_nothing_the_statuses_are_applied_once_it_is_back() {
    let t = TestStack::new().await;
    let numbers = phones(2300, 2);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let body = statuses(sent.iter().map(|(p, w)| status(w, "read", 1_764_000_000, callback(&c, p))).collect());
    // The webhook does not need the store: Meta gets its 200 (twice: it retried).
    t.raw_webhook(&body).await.assert_ok(200);
    t.raw_webhook(&body).await.assert_ok(200);
    let queued = t.take_statuses().await;
    assert_eq!(queued.len(), 2);
    // The applier's store is down (the same handlers on a table that is not there): nothing
    // is lost, every message is delivered again.
    let broken = shared::app::App::new(
        &shared::adapters::aws::sdk_config(),
        shared::config::Config { table_name: "no-such-table".into(), ..t.app.config.clone() },
    );
    let (_, failed) = shared::usecases::statuses::apply_batch(&broken, queued.clone()).await;
    assert_eq!(failed.len(), 2, "both messages come back");
    assert_eq!(counters(&campaign(&t, &c).await), [0, 0, 0]);
    // Back: applied, once.
    let (applied, failed) = shared::usecases::statuses::apply_batch(&t.app, queued).await;
    assert!(failed.is_empty());
    assert_eq!(applied.recipients_changed, 2);
    assert_eq!(counters(&campaign(&t, &c).await), [2, 2, 0]);
}

#[tokio::test]
async fn a_batch_applied_twice_counts_once() {
    // As after an applier that wrote its changes and died before deleting its messages: SQS
    // delivers them again.
    let t = TestStack::new().await;
    let numbers = phones(2350, 3);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let body = statuses(sent.iter().map(|(p, w)| status(w, "delivered", 1_764_000_000, callback(&c, p))).collect());
    t.raw_webhook(&body).await.assert_ok(200);
    let queued = t.take_statuses().await;
    let (first, _) = shared::usecases::statuses::apply_batch(&t.app, queued.clone()).await;
    let (second, _) = shared::usecases::statuses::apply_batch(&t.app, queued).await;
    assert_eq!((first.recipients_changed, second.recipients_changed), (3, 0));
    assert_eq!(counters(&campaign(&t, &c).await), [3, 0, 0]);
    assert_eq!(recount(&t, &c).await, [3, 0, 0]);
}

#[tokio::test]
async fn a_status_before_its_send_is_recorded_waits_and_is_applied_once_the_send_is() {
    let t = TestStack::new().await;
    let numbers = phones(2360, 1);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let (phone, wamid) = &sent[0];
    // The sender still holds the claim: its answer from WhatsApp is not recorded yet.
    let pk = recipient_pk(&c, phone);
    t.set(pk.clone(), &format!("R#{phone}"), &[("status", s("sending")), ("wamid", s("pending-write"))]).await;
    let body = statuses(vec![status(wamid, "delivered", 1_764_000_000, callback(&c, phone))]);
    let (_, applied) = t.webhook_applied(&body).await;
    assert_eq!((applied.waiting, applied.recipients_changed), (1, 0), "{applied:?}");
    assert_eq!(t.queued("StatusQueue").await, 1, "put back on the queue for a moment later");
    // The send is recorded; the status comes back and is applied.
    t.set(pk, &format!("R#{phone}"), &[("status", s("sent")), ("wamid", s(wamid))]).await;
    let begun = std::time::Instant::now();
    let mut changed = 0;
    while changed == 0 {
        assert!(begun.elapsed() < Duration::from_secs(10), "the status did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
        changed = t.apply_statuses().await.recipients_changed;
    }
    assert_eq!(t.recipients(&c).await[0]["status"], "delivered");
    assert_eq!(counters(&campaign(&t, &c).await), [1, 0, 0]);
}

#[tokio::test]
async fn a_status_for_a_send_whose_outcome_was_unknown_makes_it_sent() {
    let t = TestStack::new().await;
    let numbers = phones(2370, 2);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    // The first send timed out: recorded as failed, outcome unknown, no message id.
    let (phone, wamid) = &sent[0];
    let key = format!("R#{phone}");
    let unknown = "outcome unknown, not retried to avoid a double send: no answer from WhatsApp";
    let failed = [
        ("status", s("failed")),
        ("error_message", s(unknown)),
        ("GSI2PK", s(&recipient_status_pk(&c, phone, "failed"))),
    ];
    t.set(recipient_pk(&c, phone), &key, &failed).await;
    t.remove(recipient_pk(&c, phone), &key, &["wamid", "GSI3PK", "GSI3SK"]).await;
    let n = |v: i64| aws_sdk_dynamodb::types::AttributeValue::N(v.to_string());
    t.set(format!("CAMPAIGN#{c}"), "#CAMPAIGN", &[("sent_count", n(1)), ("failed_count", n(1))]).await;
    // WhatsApp took it after all: delivered, then read.
    let body = statuses(vec![
        status(wamid, "delivered", 1_764_000_000, callback(&c, phone)),
        status(wamid, "read", 1_764_000_005, callback(&c, phone)),
    ]);
    let (_, applied) = t.webhook_applied(&body).await;
    assert_eq!(applied.recipients_changed, 1, "{applied:?}");
    let r = t.recipients(&c).await.into_iter().find(|r| r["phone_number"] == phone.as_str()).unwrap();
    assert_eq!(r["status"], "read", "{r}");
    assert!(r.get("error_message").is_none(), "{r}");
    let after = campaign(&t, &c).await;
    assert_eq!((after["sent_count"].as_u64(), counters(&after)), (Some(2), [1, 1, 0]), "{after}");
    // Found by its message id from now on.
    let (_, again) = t.webhook_applied(&statuses(vec![status(wamid, "read", 1_764_000_009, None)])).await;
    assert_eq!((again.unknown, again.recipients_changed), (0, 0));
}

#[tokio::test]
async fn a_status_of_a_message_not_known_yet_is_kept_and_applied_once_its_send_is_recorded() {
    let t = TestStack::new().await;
    let numbers = phones(2380, 1);
    let (c, _, sent) = sent_campaign(&t, &numbers).await;
    let (phone, wamid) = &sent[0];
    // Without the callback key, and the send's message id not recorded (yet): unknown.
    let key = format!("R#{phone}");
    t.remove(recipient_pk(&c, phone), &key, &["wamid", "GSI3PK", "GSI3SK"]).await;
    t.set(recipient_pk(&c, phone), &key, &[("status", s("sending"))]).await;
    let (_, applied) = t.webhook_applied(&statuses(vec![status(wamid, "delivered", 1_764_000_000, None)])).await;
    assert_eq!(applied.unknown, 1, "{applied:?}");
    // Recorded now: the status comes back (tried again for a day) and is applied.
    let values =
        [("status", s("sent")), ("wamid", s(wamid)), ("GSI3PK", s(&format!("WAMID#{wamid}"))), ("GSI3SK", s("R"))];
    t.set(recipient_pk(&c, phone), &key, &values).await;
    let begun = std::time::Instant::now();
    while t.apply_statuses().await.recipients_changed == 0 {
        assert!(begun.elapsed() < Duration::from_secs(10), "the status did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(t.recipients(&c).await[0]["status"], "delivered");
}

#[tokio::test]
async fn without_an_app_secret_the_webhook_answers_503_and_queues_nothing() {
    let t = TestStack::configured(|c| c.whatsapp_app_secret = None).await;
    let body = statuses(vec![status("wamid.x", "delivered", 1_764_000_000, None)]);
    t.raw_webhook(&body).await.assert_error(503, "webhook");
    assert_eq!(t.queued("StatusQueue").await, 0);
    let t = TestStack::configured(|c| c.whatsapp_app_secret = Some("".into())).await;
    t.raw_webhook(&body).await.assert_error(503, "webhook");
    assert_eq!(t.queued("StatusQueue").await, 0);
}

#[tokio::test]
async fn the_lambda_path_takes_the_signed_sample_event_and_refuses_a_tampered_one() {
    let t = TestStack::configured(|c| c.whatsapp_app_secret = Some("sample-app-secret".into())).await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/whatsapp-webhook.json");
    let sample = std::fs::read_to_string(file).unwrap();
    let event: Value = serde_json::from_str(&sample).unwrap();
    let routes = shared::http::routes("whatsapp-webhook");
    let answer = |event: String| {
        let (app, routes) = (t.app.clone(), routes.clone());
        async move {
            let req = lambda_http::request::from_str(&event).unwrap();
            let res = shared::lambda::answer(app, &routes, req).await;
            let body = match res.body() {
                lambda_http::Body::Text(t) => t.clone(),
                _ => String::new(),
            };
            (res.status().as_u16(), body)
        }
    };
    let (status, body) = answer(sample.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.queued("StatusQueue").await, 1);
    // API Gateway may hand the body over base64-encoded: the signature is checked over the
    // decoded bytes.
    let raw = event["body"].as_str().unwrap().to_string();
    let encoded = |body: &str| {
        let mut e = event.clone();
        e["isBase64Encoded"] = json!(true);
        e["body"] = json!(BASE64.encode(body.as_bytes()));
        e.to_string()
    };
    let (status, body) = answer(encoded(&raw)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.queued("StatusQueue").await, 2);
    // The same body with one word changed, the signature unchanged: refused, either way.
    let tampered = raw.replacen("delivered", "read", 1);
    let mut plain = event.clone();
    plain["body"] = json!(tampered);
    for e in [plain.to_string(), encoded(&tampered)] {
        let (status, body) = answer(e).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(t.queued("StatusQueue").await, 2, "nothing more queued");
}

/// A UTILITY template on the account, for campaigns that may still reach opted-out numbers.
async fn utility_campaign(t: &TestStack, account: &str) -> String {
    let body = json!({"account_id": account, "name": "receipt", "language": "en_US", "category": "UTILITY",
                      "status": "APPROVED", "components": [{"type": "BODY", "text": "Hi {{1}}, use {{2}}"}]});
    let template = t.post("/api/templates", body).await.assert_ok(201)["id"].as_str().unwrap().to_string();
    let body = json!({"name": "Receipts", "account_id": account, "template_id": template,
                      "variable_mapping": {"1": "name", "2": "discount_code"}});
    t.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string()
}

fn csv(numbers: &[String]) -> String {
    let rows: Vec<String> = numbers.iter().map(|p| format!("{p},N,C")).collect();
    format!("phone_number,name,discount_code\n{}\n", rows.join("\n"))
}

#[tokio::test]
async fn opt_outs_from_failures_and_preferences_are_kept_out_of_marketing_imports() {
    let t = TestStack::new().await;
    let numbers = phones(2400, 3);
    let (c, account, sent) = sent_campaign(&t, &numbers).await;
    // 131050 on a sent message, and a user_preferences "stop" for another number.
    let mut failed = status(&sent[0].1, "failed", 1_764_000_000, callback(&c, &sent[0].0));
    failed["errors"][0]["code"] = json!(131050);
    t.webhook(&statuses(vec![failed])).await.assert_ok(200);
    let stop = |number: &str, value: &str| {
        notification(
            "user_preferences",
            json!({ "messaging_product": "whatsapp", "metadata": { "phone_number_id": PHONE_NUMBER_ID },
                    "user_preferences": [{ "wa_id": number.trim_start_matches('+'), "detail": "User requested to stop",
                                            "category": "marketing_messages", "value": value, "timestamp": 1764000000 }] }),
        )
    };
    let (_, applied) = t.webhook_applied(&stop(&numbers[1], "stop")).await;
    assert_eq!(applied.opt_outs, 1);

    // A new MARKETING campaign of the account: both are reported and left out.
    let marketing = t.another_campaign(&account, &[]).await;
    let fresh = phones(2500, 2);
    let all: Vec<String> = numbers.iter().chain(&fresh).cloned().collect();
    let import = t.post_csv(&format!("/api/campaigns/{marketing}/recipients/import"), csv(&all)).await;
    let data = import.assert_ok(200);
    assert_eq!((data["imported"].as_u64(), data["opted_out"].as_u64()), (Some(3), Some(2)), "{data}");
    let reasons = data["errors"].to_string();
    assert!(reasons.contains(&numbers[0]) && reasons.contains("opted out"), "{reasons}");
    let kept: Vec<String> = t.recipients(&marketing).await.iter().map(|r| r["phone_number"].to_string()).collect();
    assert!(!kept.iter().any(|p| p.contains(&numbers[0]) || p.contains(&numbers[1])), "{kept:?}");

    // A UTILITY campaign may still reach them: added, and reported.
    let utility = utility_campaign(&t, &account).await;
    let import = t.post_csv(&format!("/api/campaigns/{utility}/recipients/import"), csv(&all)).await;
    let data = import.assert_ok(200);
    assert_eq!((data["imported"].as_u64(), data["opted_out"].as_u64()), (Some(5), Some(2)), "{data}");

    // "resume" takes the number off the list.
    t.webhook(&stop(&numbers[1], "resume")).await.assert_ok(200);
    let again = t.another_campaign(&account, &[]).await;
    let import = t.post_csv(&format!("/api/campaigns/{again}/recipients/import"), csv(&all)).await;
    assert_eq!(import.assert_ok(200)["opted_out"], 1);
}

#[tokio::test]
async fn the_sender_never_sends_a_marketing_template_to_an_opted_out_number() {
    let t = TestStack::sending(2).await;
    let numbers = phones(2600, 4);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    // The person opts out after the import, before the start.
    let stop = notification(
        "user_preferences",
        json!({ "metadata": { "phone_number_id": PHONE_NUMBER_ID },
                "user_preferences": [{ "wa_id": numbers[2].trim_start_matches('+'),
                                        "category": "marketing_messages", "value": "stop" }] }),
    );
    t.webhook(&stop).await.assert_ok(200);
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    let done = t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    assert_eq!((done["sent_count"].as_u64(), done["failed_count"].as_u64()), (Some(3), Some(1)));
    let sent_to: Vec<String> = t.fake.requests().iter().filter_map(|r| r.to.clone()).collect();
    assert_eq!(sent_to.len(), 3);
    assert!(!sent_to.contains(&numbers[2]), "{sent_to:?}");
    let r = t.recipients(&c).await.into_iter().find(|r| r["phone_number"] == numbers[2].as_str()).unwrap();
    assert_eq!((r["status"].as_str(), r["error_code"].as_i64()), (Some("failed"), Some(131050)));
}

#[tokio::test]
async fn campaign_events_arrive_on_the_bus_with_the_final_counters() {
    // No workers at first, so that nothing sends while the lifecycle is walked through.
    let t = TestStack::sending(0).await;
    let (lifecycle, _) = t.campaign_with("TIER_100K", &phones(2800, 1)).await;
    for action in ["start", "pause", "start", "cancel"] {
        t.post(&format!("/api/campaigns/{lifecycle}/{action}"), json!({})).await.assert_ok(200);
    }
    let numbers = phones(2700, 3);
    let c = t.another_campaign(&t.campaign_with("TIER_100K", &[]).await.1, &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.spawn_workers(2);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;

    let events = t.events().await;
    let of =
        |id: &str| -> Vec<(String, Value)> { events.iter().filter(|(_, d)| d["campaign_id"] == id).cloned().collect() };
    let names = |list: &[(String, Value)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let walked = of(&lifecycle);
    assert_eq!(names(&walked), ["CampaignStarted", "CampaignPaused", "CampaignResumed", "CampaignCancelled"]);
    assert_eq!(
        (walked[1].1["status"].as_str(), walked[1].1["previous_status"].as_str()),
        (Some("paused"), Some("sending"))
    );
    assert_eq!(walked[3].1["status"], "cancelled");
    let completed = of(&c);
    assert_eq!(names(&completed), ["CampaignStarted", "CampaignCompleted"]);
    let done = &completed[1].1;
    assert_eq!(done["status"], "completed");
    assert_eq!((done["sent_count"].as_u64(), done["total_recipients"].as_u64()), (Some(3), Some(3)));
    assert!(done["completed_at"].is_string() && done["account_id"].is_string() && done["occurred_at"].is_string());
}

#[tokio::test]
async fn a_local_campaign_reaches_delivered_and_read_counts_from_the_fakes_webhooks() {
    let t = TestStack::sending(2).await;
    // Every status twice, and each message's statuses out of their natural order.
    t.post_statuses((20, 60, Some(120)), |config| (config.duplicate, config.shuffle) = (true, true)).await;
    // Two numbers the fake accepts and then reports failed by webhook: 131026, and 131050 (opt-out).
    let (undeliverable, opted_out) = ("+14155559011".to_string(), "+14155559012".to_string());
    let mut numbers = phones(2900, 6);
    numbers.extend([undeliverable.clone(), opted_out.clone()]);
    let (c, account) = t.campaign_with("TIER_100K", &numbers).await;
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed").await;
    let done = t
        .wait_for(&c, Duration::from_secs(30), |c| {
            (c["delivered_count"].as_u64(), c["read_count"].as_u64(), c["failed_count"].as_u64())
                == (Some(6), Some(6), Some(2))
        })
        .await;
    assert!(t.fake.wait_for_webhooks_idle(Duration::from_secs(10)).await);
    assert_eq!(done["sent_count"], 8, "all eight were accepted at send");
    assert_eq!(recount(&t, &c).await, counters(&campaign(&t, &c).await));
    // sent, delivered, read for six; sent, failed and failed for the two others; all twice.
    let posts = t.fake.webhooks();
    let delivered: usize = posts.iter().filter(|p| p.succeeded()).map(|p| p.statuses.len()).sum();
    assert_eq!(delivered, 2 * (6 * 3 + 2 + 1), "{posts:?}");
    assert!(posts.iter().all(|p| p.succeeded() || p.status == Some(503)), "only retriable refusals: {posts:?}");
    let rs = t.recipients(&c).await;
    let failed = rs.iter().find(|r| r["phone_number"] == undeliverable.as_str()).unwrap();
    assert_eq!((failed["status"].as_str(), failed["error_code"].as_i64()), (Some("failed"), Some(131026)));
    // The 131050 failure put the number on the account's opt-out list.
    let next = t.another_campaign(&account, &[]).await;
    let import = t.post_csv(&format!("/api/campaigns/{next}/recipients/import"), csv(&numbers)).await;
    assert_eq!(import.assert_ok(200)["opted_out"], 1);
}

/// Campaigns created before recipients were sharded keep every recipient in the campaign's
/// own partition: they import, send, take webhooks, list and delete as before.
#[tokio::test]
async fn a_campaign_created_before_sharding_sends_counts_lists_and_deletes_in_its_one_partition() {
    let t = TestStack::sending(2).await;
    t.post_statuses((20, 60, None), |_| {}).await;
    let (c, _) = t.campaign_with("TIER_100K", &[]).await;
    // As an earlier version stored it: no shard count.
    t.remove(format!("CAMPAIGN#{c}"), "#CAMPAIGN", &["recipient_shards"]).await;
    let numbers = phones(2950, 12);
    t.add_recipients(&c, &numbers).await;
    assert_eq!(t.count_items(format!("CAMPAIGN#{c}"), "R#").await, 12, "in the campaign's partition");
    assert_eq!(t.count_recipient_items(&c).await, 0, "none in shards");
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200);
    t.wait_for(&c, Duration::from_secs(30), |c| c["status"] == "completed" && c["delivered_count"] == 12).await;
    assert_eq!(recount(&t, &c).await, counters(&campaign(&t, &c).await));
    let base = format!("/api/campaigns/{c}/recipients?status=delivered&limit=5");
    let mut next = t.get(&base).await.data().clone();
    let mut seen = next["items"].as_array().unwrap().len();
    while let Some(cursor) = next["next_cursor"].as_str().map(str::to_string) {
        next = t.get(&format!("{base}&cursor={cursor}")).await.data().clone();
        seen += next["items"].as_array().unwrap().len();
    }
    assert_eq!((seen, next["total"].as_u64()), (12, Some(12)));
    t.delete(&format!("/api/campaigns/{c}")).await.assert_ok(200);
    t.eventually(Duration::from_secs(20), "the campaign's items are removed", || async {
        t.count_items(format!("CAMPAIGN#{c}"), "").await == 0
    })
    .await;
}
