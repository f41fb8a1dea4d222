//! Recipient files uploaded to the emulator's bucket with the presigned URL (a real HTTP PUT),
//! announced by the bucket's notice on the import queue and imported by the import worker as
//! the local stack runs it.

use std::time::Duration;

use serde_json::{Value, json};
use shared::config::Config;

use crate::stack::{TestStack, s};

fn uploads_path(campaign: &str) -> String {
    format!("/api/campaigns/{campaign}/recipients/uploads")
}

/// A stack whose import worker polls the import queue; each invocation gets `timeout`.
async fn stack(timeout: Duration, change: impl FnOnce(&mut Config)) -> TestStack {
    let t = TestStack::configured(change).await;
    let workers = local::workers::Workers {
        senders: 0,
        status_appliers: 0,
        reconcile_every: None,
        import_timeout: timeout,
        ..Default::default()
    };
    workers.spawn(t.app.clone(), t.sqs.clone());
    t
}

/// Creates an upload and PUTs `body` to its presigned URL; returns the upload's id.
async fn upload(t: &TestStack, campaign: &str, format: &str, body: impl Into<reqwest::Body>) -> String {
    let created = t.post(&uploads_path(campaign), json!({"format": format})).await;
    let d = created.assert_ok(201).clone();
    assert_eq!(d["status"], "waiting_for_file");
    let url = d["upload_url"].as_str().unwrap();
    assert!(url.starts_with(std::env::var("AWS_ENDPOINT_URL").unwrap().as_str()), "{url}");
    assert!(url.contains(&format!("uploads/{campaign}/")) && url.contains(&format!(".{format}")), "{url}");
    let put = reqwest::Client::new().put(url).body(body).send().await.unwrap();
    assert!(put.status().is_success(), "PUT {url}: {} {}", put.status(), put.text().await.unwrap_or_default());
    d["upload_id"].as_str().unwrap().to_string()
}

/// Polls the upload until it is completed or failed.
async fn finished(t: &TestStack, campaign: &str, id: &str, within: Duration) -> Value {
    let start = std::time::Instant::now();
    loop {
        let d = t.get(&format!("{}/{id}", uploads_path(campaign))).await.assert_ok(200).clone();
        if d["status"] == "completed" || d["status"] == "failed" {
            return d;
        }
        assert!(start.elapsed() < within, "the upload did not finish: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A recipient of the campaign as the API lists it.
async fn recipient(t: &TestStack, campaign: &str, phone: &str) -> Value {
    let list = t.get(&format!("/api/campaigns/{campaign}/recipients?limit=100")).await;
    let items = list.assert_ok(200)["items"].as_array().unwrap().clone();
    items.into_iter().find(|r| r["phone_number"] == phone).unwrap_or_else(|| panic!("{phone} is not listed"))
}

fn counts(d: &Value) -> [u64; 5] {
    ["rows_read", "imported", "duplicates", "invalid", "opted_out"].map(|k| d[k].as_u64().unwrap_or(u64::MAX))
}

#[tokio::test]
async fn a_csv_uploaded_with_the_presigned_url_is_imported_with_exact_counts() {
    let t = stack(Duration::from_secs(60), |_| {}).await;
    let (id, account, _) = t.campaign().await;
    // Already in the campaign, and an opt-out of the account (the template is MARKETING).
    t.post_csv(&format!("/api/campaigns/{id}/recipients/import"), "phone,name,discount_code\n+14155550100,Old,O\n")
        .await
        .assert_ok(200);
    t.app.db.set_opt_out(&account, "+14155550105", true, "test", "2026-01-01T00:00:00Z").await.unwrap();
    let csv = "\u{feff}Phone,name,discount_code\r\n\
               +14155550101,\"Doe, John\",\"A\nB\"\r\n\
               not-a-number,Bad,X\r\n\
               (415) 555-0102,Jane,S\r\n\
               +14155550101,Again,Y\r\n\
               +14155550100,Old again,Z\r\n\
               +14155550103,No code,\r\n\
               +14155550105,Opted,Q\r\n\
               +14155550104,Last,L";
    let upload_id = upload(&t, &id, "csv", csv).await;
    let d = finished(&t, &id, &upload_id, Duration::from_secs(30)).await;
    assert_eq!(d["status"], "completed", "{d}");
    // rows, imported, duplicates (a repeat in the file, one the campaign held), invalid, opted out.
    assert_eq!(counts(&d), [8, 3, 2, 2, 1], "{d}");
    let rows: Vec<u64> = d["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [2, 4, 5, 6, 7], "{d}");
    assert!(d["finished_at"].is_string() && d.get("error").is_none(), "{d}");
    let campaign = t.get(&format!("/api/campaigns/{id}")).await.data().clone();
    assert_eq!(campaign["total_recipients"], 4);
    assert_eq!(t.count_recipient_items(&id).await, 4);
    let john = recipient(&t, &id, "+14155550101").await;
    assert_eq!((john["name"].as_str(), john["discount_code"].as_str()), (Some("Doe, John"), Some("A\nB")));
    // The lock is released: the campaign takes another import.
    assert!(!t.item(format!("CAMPAIGN#{id}"), "#CAMPAIGN").await.unwrap().contains_key("import_lock"));
}

#[tokio::test]
async fn a_json_upload_is_imported_item_by_item() {
    let t = stack(Duration::from_secs(60), |_| {}).await;
    let (id, _, _) = t.campaign().await;
    let body = json!([
        {"phone_number": "+14155550201", "name": "A", "discount_code": 1},
        {"phone": "4155550202", "name": "B", "discount_code": "X", "vip": true},
        "oops",
        {"phone_number": "+14155550203", "name": {"first": "C"}, "discount_code": "Z"}
    ]);
    let upload_id = upload(&t, &id, "json", body.to_string()).await;
    let d = finished(&t, &id, &upload_id, Duration::from_secs(30)).await;
    assert_eq!((d["status"].as_str(), counts(&d)), (Some("completed"), [4, 2, 0, 2, 0]), "{d}");
    let b = recipient(&t, &id, "+14155550202").await;
    assert_eq!((b["vip"].as_str(), b["discount_code"].as_str()), (Some("true"), Some("X")));
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 2);
}

#[tokio::test]
async fn an_import_stopped_by_its_deadline_resumes_from_its_checkpoint_and_counts_each_row_once() {
    // Invocations with no time left: each imports one chunk of 7 rows, checkpoints and puts
    // its next step on the queue.
    let t = stack(Duration::ZERO, |c| c.import_chunk_rows = 7).await;
    let (id, _, _) = t.campaign().await;
    let mut csv = String::from("phone_number,name,discount_code\n");
    for i in 0..60 {
        csv.push_str(&format!("+1415555{:04},\"N\n{i}\",C{i}\n", 3000 + i % 50));
    }
    csv.push_str("bad,X,Y\n");
    let upload_id = upload(&t, &id, "csv", csv).await;
    let d = finished(&t, &id, &upload_id, Duration::from_secs(60)).await;
    assert_eq!((d["status"].as_str(), counts(&d)), (Some("completed"), [61, 50, 10, 1, 0]), "{d}");
    // The repeats were found across chunks and invocations.
    assert!(d["errors"][0]["reason"].as_str().unwrap().contains("already in the campaign"), "{d}");
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 50);
    assert_eq!(t.count_recipient_items(&id).await, 50);
}

#[tokio::test]
async fn a_chunk_written_before_a_crash_is_counted_once_when_the_import_resumes() {
    let t = stack(Duration::from_secs(60), |c| c.import_chunk_rows = 4).await;
    let (id, _, _) = t.campaign().await;
    let csv = "phone,name,discount_code\n+14155550301,A,1\n+14155550302,B,2\n+14155550303,C,3\n+14155550304,D,4\n\
               +14155550305,E,5\n+14155550306,F,6\n";
    // The worker stopped after writing two of the first chunk's numbers, before recording the
    // chunk: the upload holds the lock, and the two carry the first chunk's tag. Another
    // number of the chunk was in the campaign before (another tag): a duplicate.
    let created = t.post(&uploads_path(&id), json!({})).await.assert_ok(201).clone();
    let upload_id = created["upload_id"].as_str().unwrap().to_string();
    let pk = format!("CAMPAIGN#{id}");
    let sk = format!("UPLOAD#{upload_id}");
    let token = "crashed-worker";
    t.set(pk.clone(), &sk, &[("status", s("importing")), ("lock_token", s(token))]).await;
    t.set(pk.clone(), &sk, &[("version", aws_sdk_dynamodb::types::AttributeValue::N("3".into()))]).await;
    t.set(
        pk.clone(),
        "#CAMPAIGN",
        &[
            ("import_lock", s(token)),
            ("import_lock_until", aws_sdk_dynamodb::types::AttributeValue::N("99999999999".into())),
        ],
    )
    .await;
    t.post_csv(&format!("/api/campaigns/{id}/recipients/import"), "phone,name,discount_code\n+1\n")
        .await
        .assert_error(409, "another import");
    let accepted = |rows: &[(&str, &str, &str)]| -> Vec<shared::domain::import::Accepted> {
        rows.iter()
            .map(|(p, n, c)| shared::domain::import::Accepted {
                row: 0,
                phone: shared::domain::phone::Phone::e164(p).unwrap(),
                fields: [("name".to_string(), n.to_string()), ("discount_code".to_string(), c.to_string())].into(),
            })
            .collect()
    };
    let campaign = t.app.db.get_campaign(&id).await.unwrap().unwrap();
    let ours = accepted(&[("+14155550301", "A", "1"), ("+14155550302", "B", "2")]);
    let tag = format!("{upload_id}#0");
    t.app.db.put_recipients(&campaign, ours, &shared::domain::now(), Some(&tag)).await.unwrap();
    let earlier = accepted(&[("+14155550304", "D", "4")]);
    t.app.db.put_recipients(&campaign, earlier, &shared::domain::now(), Some("another-upload#0")).await.unwrap();
    // The file arrives (its notice is the redelivered step).
    let url = created["upload_url"].as_str().unwrap();
    assert!(reqwest::Client::new().put(url).body(csv).send().await.unwrap().status().is_success());
    let d = finished(&t, &id, &upload_id, Duration::from_secs(30)).await;
    assert_eq!((d["status"].as_str(), counts(&d)), (Some("completed"), [6, 5, 1, 0, 0]), "{d}");
    assert!(d["errors"][0]["reason"].as_str().unwrap().contains("+14155550304 is already in the campaign"), "{d}");
    // The earlier number was never counted (it was written behind the counters' back here).
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 5);
    assert_eq!(t.count_recipient_items(&id).await, 6);
}

#[tokio::test]
async fn an_upload_into_a_campaign_that_has_started_fails_clearly() {
    let t = stack(Duration::from_secs(60), |_| {}).await;
    let (id, _, _) = t.campaign().await;
    let created = t.post(&uploads_path(&id), json!({"format": "csv"})).await.assert_ok(201).clone();
    t.set_campaign_status(&id, "sending").await;
    // Refused up front now, and the file of the upload made before fails when it arrives.
    t.post(&uploads_path(&id), json!({})).await.assert_error(409, "is sending");
    let url = created["upload_url"].as_str().unwrap();
    let put = reqwest::Client::new().put(url).body("phone,name,discount_code\n+14155550401,A,B\n").send().await;
    assert!(put.unwrap().status().is_success());
    let d = finished(&t, &id, created["upload_id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap().contains("is sending"), "{d}");
    assert_eq!((d["imported"].as_u64(), t.count_recipient_items(&id).await), (Some(0), 0));
}

#[tokio::test]
async fn bad_uploads_get_a_clear_answer() {
    let t = stack(Duration::from_secs(60), |_| {}).await;
    let (id, _, _) = t.campaign().await;
    t.post(&uploads_path(&id), json!({"format": "xlsx"})).await.assert_error(422, "format");
    t.post(&uploads_path(&id), json!({"size": 1})).await.assert_error(422, "size");
    t.post(&uploads_path("0b6f4c6e-0000-4000-8000-000000000000"), json!({})).await.assert_error(404, "not found");
    t.get(&format!("{}/0b6f4c6e-0000-4000-8000-000000000000", uploads_path(&id))).await.assert_error(404, "upload");
    t.get(&format!("{}/nope", uploads_path(&id))).await.assert_error(404, "upload nope");
    // A file without a phone column fails, saying why; the campaign is left as it was.
    let upload_id = upload(&t, &id, "csv", "name,code\nA,B\n").await;
    let d = finished(&t, &id, &upload_id, Duration::from_secs(30)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap().contains("no phone column"), "{d}");
    assert!(!t.item(format!("CAMPAIGN#{id}"), "#CAMPAIGN").await.unwrap().contains_key("import_lock"));
}

#[tokio::test]
async fn a_request_import_that_runs_out_of_time_says_what_it_did_not_import() {
    // No time at all: the import writes one chunk of 5 and stops.
    let t = TestStack::configured(|c| {
        c.import_request_seconds = 0;
        c.import_chunk_rows = 5;
    })
    .await;
    let (id, _, _) = t.campaign().await;
    let mut csv = String::from("phone_number,name,discount_code\nbad,X,Y\n");
    for i in 0..12 {
        csv.push_str(&format!("+1415555{:04},N{i},C{i}\n", 5000 + i));
    }
    let d = t.post_csv(&format!("/api/campaigns/{id}/recipients/import"), csv).await.assert_ok(200).clone();
    assert_eq!(
        (d["complete"].as_bool(), d["imported"].as_u64(), d["not_imported"].as_u64(), d["invalid"].as_u64()),
        (Some(false), Some(5), Some(7), Some(1)),
        "{d}"
    );
    assert_eq!(d["first_row_not_imported"], 7);
    assert!(d["message"].as_str().unwrap().contains("from row 7 on"), "{d}");
    assert_eq!(d["total_recipients"], 5);
    assert_eq!(t.count_recipient_items(&id).await, 5);
}
