//! Results exports: a CSV file in the bucket, written by the background-jobs consumer a part
//! at a time, downloaded with a presigned URL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::domain::export::ExportJob;
use shared::domain::id::Id;

use crate::stack::{TestStack, recipient_status_pk, s};

/// A campaign with `n` recipients (name and code fields); the third one failed at send.
async fn campaign(t: &TestStack, n: usize) -> String {
    let (id, _, _) = t.campaign().await;
    let mut csv = String::from("phone_number,name,discount_code\n");
    for i in 0..n {
        csv.push_str(&format!("+1415{:07},\"Name, {i}\",CODE{i}\n", 3_000_000 + i));
    }
    let imported = t.post_csv(&format!("/api/campaigns/{id}/recipients/import"), csv).await;
    assert_eq!(imported.assert_ok(200)["imported"].as_u64(), Some(n as u64));
    let failed = [
        ("status", s("failed")),
        ("failed_at", s("2026-01-01T10:00:11Z")),
        ("error_code", aws_sdk_dynamodb::types::AttributeValue::N("131026".into())),
        ("error_message", s("Message undeliverable")),
        ("GSI2PK", s(&recipient_status_pk(&id, "+14153000002", "failed"))),
    ];
    t.set_recipient(&id, "+14153000002", &failed).await;
    id
}

/// Polls the export until it is no longer `exporting`.
async fn finished(t: &TestStack, campaign: &str, export: &str) -> Value {
    let begun = Instant::now();
    loop {
        let d = t.get(&format!("/api/campaigns/{campaign}/exports/{export}")).await.assert_ok(200).clone();
        if d["status"] != "exporting" {
            return d;
        }
        assert!(begun.elapsed() < Duration::from_secs(30), "the export did not finish: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The file at the export's download URL, as CSV records.
async fn download(export: &Value) -> Vec<Vec<String>> {
    let url = export["download_url"].as_str().unwrap_or_else(|| panic!("no download URL: {export}"));
    let body = reqwest::get(url).await.unwrap().error_for_status().unwrap().bytes().await.unwrap();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(body.as_ref());
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

#[tokio::test]
async fn an_export_is_a_csv_of_every_recipient_with_its_results_downloaded_with_a_presigned_url() {
    let t = TestStack::new().await;
    let id = campaign(&t, 30).await;
    let created = t.post(&format!("/api/campaigns/{id}/exports"), json!({})).await;
    assert_eq!(created.status.as_u16(), 202, "{}", created.body);
    let d = created.data().clone();
    assert_eq!(
        (d["status"].as_str(), d["rows"].as_u64(), d["download_url"].clone()),
        (Some("exporting"), Some(0), json!(null))
    );
    let _workers = t.spawn_workers(1);
    let done = finished(&t, &id, d["export_id"].as_str().unwrap()).await;
    assert_eq!((done["status"].as_str(), done["rows"].as_u64()), (Some("completed"), Some(30)), "{done}");
    let rows = download(&done).await;
    assert_eq!(
        rows[0],
        [
            "phone_number",
            "discount_code",
            "name",
            "status",
            "wamid",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "error_code",
            "error_message",
            "other_fields"
        ]
    );
    assert_eq!(rows.len(), 31);
    let phones: BTreeSet<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(phones.len(), 30, "each recipient once");
    let failed = rows.iter().find(|r| r[0] == "+14153000002").unwrap();
    assert_eq!((failed[2].as_str(), failed[3].as_str(), failed[9].as_str()), ("Name, 2", "failed", "131026"));

    // Only the failed ones.
    let only = t.post(&format!("/api/campaigns/{id}/exports"), json!({"status": "failed"})).await;
    let done = finished(&t, &id, only.data()["export_id"].as_str().unwrap()).await;
    assert_eq!((done["rows"].as_u64(), done["filter"].as_str()), (Some(1), Some("failed")));
    assert_eq!(download(&done).await.len(), 2);

    // Bad input and unknown ids.
    t.post(&format!("/api/campaigns/{id}/exports"), json!({"status": "lost"}))
        .await
        .assert_error(422, "status must be one of");
    t.post(&format!("/api/campaigns/{id}/exports"), json!({"format": "xlsx"})).await.assert_error(422, "unknown field");
    t.get(&format!("/api/campaigns/{id}/exports/not-an-id")).await.assert_error(404, "not found");
    t.get(&format!("/api/campaigns/{id}/exports/{}", Id::generate())).await.assert_error(404, "not found");
    t.post(&format!("/api/campaigns/{}/exports", Id::generate()), json!({})).await.assert_error(404, "not found");
}

#[tokio::test]
async fn an_export_stopped_by_its_deadline_goes_on_from_its_last_part_and_writes_each_row_once() {
    // Parts of 1 KiB (the emulator takes them; AWS wants 5 MiB): 300 rows make several.
    let t = TestStack::configured(|c| c.export_part_bytes = 1024).await;
    let id = campaign(&t, 300).await;
    let created = t.post(&format!("/api/campaigns/{id}/exports"), json!({})).await;
    let export_id = created.data()["export_id"].as_str().unwrap().to_string();
    let job = ExportJob { campaign_id: Id::stored(id.clone()), export_id: Id::stored(export_id.clone()) };
    // A step whose deadline has come uploads one part, saves where it is, and queues the next.
    shared::usecases::export::write(&t.app, &job, Instant::now()).await.unwrap();
    let first = t.get(&format!("/api/campaigns/{id}/exports/{export_id}")).await.data().clone();
    let rows_after_first = first["rows"].as_u64().unwrap();
    assert_eq!(first["status"], "exporting");
    assert!((1..300).contains(&rows_after_first), "{first}");
    assert_eq!(t.queued("JobQueue").await, 2, "the POST's job and the next step");
    // The steps go on (the POST's job too: it finds the checkpoint and goes on from there).
    let mut steps = 1;
    while t.get(&format!("/api/campaigns/{id}/exports/{export_id}")).await.data()["status"] == "exporting" {
        shared::usecases::export::write(&t.app, &job, Instant::now()).await.unwrap();
        steps += 1;
        assert!(steps < 100, "the export does not end");
    }
    let done = t.get(&format!("/api/campaigns/{id}/exports/{export_id}")).await.data().clone();
    assert_eq!((done["status"].as_str(), done["rows"].as_u64()), (Some("completed"), Some(300)), "{done}");
    assert!(steps > 2, "several parts, one per step: {steps}");
    let rows = download(&done).await;
    let phones: BTreeSet<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!((rows.len(), phones.len()), (301, 300), "a header and each recipient once");
    // A step of a finished export changes nothing.
    shared::usecases::export::write(&t.app, &job, Instant::now()).await.unwrap();
    assert_eq!(t.get(&format!("/api/campaigns/{id}/exports/{export_id}")).await.data()["rows"], 300);
}
