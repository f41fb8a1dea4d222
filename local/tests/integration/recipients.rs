use http::Method;
use serde_json::json;

use crate::stack::{TestStack, recipient_pk, recipient_status_pk, s};

fn import_path(id: &str) -> String {
    format!("/api/campaigns/{id}/recipients/import")
}

#[tokio::test]
async fn json_import_counts_imported_duplicates_and_invalid() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let body = json!({"recipients": [
        {"phone_number": "+14155550123", "name": "John Doe", "discount_code": "SAVE20"},
        {"phone_number": "(415) 555-0124", "name": "Jane Smith", "discount_code": "SAVE15"},
        {"phone_number": "+1 415 555 0123", "name": "John again", "discount_code": "X"},
        {"phone_number": "+0987654321", "name": "Bad", "discount_code": "X"},
        {"phone_number": "+14155550125", "name": "No code"}]});
    let answer = t.post(&import_path(&id), body).await;
    let d = answer.assert_ok(200);
    assert_eq!((d["imported"].as_u64(), d["duplicates"].as_u64(), d["invalid"].as_u64()), (Some(2), Some(1), Some(2)));
    let rows: Vec<u64> = d["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [3, 4, 5]);
    assert!(d["errors"][2]["reason"].as_str().unwrap().contains("discount_code"));

    // The same numbers again are duplicates of what the campaign already holds.
    let again = t
        .post(
            &import_path(&id),
            json!({"recipients": [
        {"phone_number": "+14155550124", "name": "Jane", "discount_code": "A"},
        {"phone_number": "+14155550126", "name": "New", "discount_code": "B"}]}),
        )
        .await;
    let d = again.assert_ok(200);
    assert_eq!(
        (d["imported"].as_u64(), d["duplicates"].as_u64(), d["total_recipients"].as_u64()),
        (Some(1), Some(1), Some(3))
    );
    assert!(d["errors"][0]["reason"].as_str().unwrap().contains("already in the campaign"));
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 3);
    assert_eq!(t.count_recipient_items(&id).await, 3);
}

#[tokio::test]
async fn csv_import_raw_and_multipart_with_quotes_newlines_crlf_and_bom() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let csv = "\u{feff}Mobile,name,discount_code,city\r\n\"+1 (415) 555-0101\",\"Doe, John\",\"SAVE\n20\",Paris\r\n4155550102,Jane,S15,\r\n";
    let raw = t.post_csv(&import_path(&id), csv).await;
    assert_eq!(raw.assert_ok(200)["imported"], 2);

    let boundary = "XyZ123";
    let file = "phone,name,discount_code\n+14155550103,Ann,A1\n+14155550101,Dup,D\n";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.csv\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let answer = t.call(Method::POST, &import_path(&id), Some(&ct), multipart).await;
    let d = answer.assert_ok(200);
    assert_eq!((d["imported"].as_u64(), d["duplicates"].as_u64()), (Some(1), Some(1)));

    let list = t.get(&format!("/api/campaigns/{id}/recipients")).await;
    let items = list.assert_ok(200)["items"].as_array().unwrap().clone();
    let john = items.iter().find(|r| r["phone_number"] == "+14155550101").unwrap();
    assert_eq!(
        (john["name"].as_str(), john["discount_code"].as_str(), john["city"].as_str()),
        (Some("Doe, John"), Some("SAVE\n20"), Some("Paris"))
    );
    assert_eq!(john["status"], "pending");
    assert!(john["id"].as_str().unwrap().len() == 36 && john.get("sent_at").is_none());

    let no_file =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n");
    t.call(Method::POST, &import_path(&id), Some(&ct), no_file).await.assert_error(422, "no field named file");
}

#[tokio::test]
async fn bad_imports_get_a_clear_4xx_and_change_nothing() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let path = import_path(&id);
    t.call(Method::POST, &path, Some("application/xml"), "<r/>").await.assert_error(415, "application/xml");
    t.call(Method::POST, &path, None, "a,b").await.assert_error(415, "Content-Type is required");
    t.post_csv(&path, "name,discount_code\nA,B\n").await.assert_error(422, "no phone column");
    t.post_csv(&path, "phone,status\n+14155550101,x\n").await.assert_error(422, "reserved");
    t.post_csv(&path, "phone,name\n").await.assert_error(422, "no recipient rows");
    t.call(Method::POST, &path, Some("application/json"), "{\"recipients\": [")
        .await
        .assert_error(400, "malformed JSON");
    t.post(&path, json!({"recipients": "x"})).await.assert_error(422, "recipients must be an array");
    t.post_csv("/api/campaigns/0b6f4c6e-0000-4000-8000-000000000000/recipients/import", "phone\n1\n")
        .await
        .assert_error(404, "not found");
    let big = vec![b'1'; shared::http::MAX_BODY_BYTES + 1];
    t.post_csv(&path, big).await.assert_error(413, "Split the file");
    assert_eq!(t.get(&format!("/api/campaigns/{id}")).await.data()["total_recipients"], 0);

    // One import at a time; a campaign that has started takes none.
    t.set(
        format!("CAMPAIGN#{id}"),
        "#CAMPAIGN",
        &[
            ("import_lock", s("other")),
            ("import_lock_until", aws_sdk_dynamodb::types::AttributeValue::N("99999999999".into())),
        ],
    )
    .await;
    t.post_csv(&path, "phone,name,discount_code\n+14155550101,A,B\n").await.assert_error(409, "another import");
    t.set(
        format!("CAMPAIGN#{id}"),
        "#CAMPAIGN",
        &[("import_lock_until", aws_sdk_dynamodb::types::AttributeValue::N("1".into())), ("status", s("completed"))],
    )
    .await;
    t.post_csv(&path, "phone,name,discount_code\n+14155550101,A,B\n").await.assert_error(409, "is completed");
    assert_eq!(t.count_recipient_items(&id).await, 0);
}

#[tokio::test]
async fn recipients_page_and_filter_by_status_with_exact_totals() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let mut csv = String::from("phone_number,name,discount_code\n");
    for i in 0..25 {
        csv.push_str(&format!("+1415555{:04},N{i},C{i}\n", 1000 + i));
    }
    assert_eq!(t.post_csv(&import_path(&id), csv).await.assert_ok(200)["imported"], 25);
    // A number the campaign already holds is a duplicate, even alone in its import.
    let one = t.post_csv(&import_path(&id), "phone_number,name,discount_code\n+14155551001,X,Y\n").await;
    assert_eq!((one.assert_ok(200)["duplicates"].as_u64(), one.data()["imported"].as_u64()), (Some(1), Some(0)));

    // Two recipients move on the way the sender and the webhook will move them.
    t.set_recipient(
        &id,
        "+14155551003",
        &[
            ("status", s("read")),
            ("sent_at", s("2026-01-01T10:00:10Z")),
            ("delivered_at", s("2026-01-01T10:00:15Z")),
            ("read_at", s("2026-01-01T10:01:00Z")),
        ],
    )
    .await;
    t.set_recipient(
        &id,
        "+14155551007",
        &[
            ("status", s("failed")),
            ("GSI2PK", s(&recipient_status_pk(&id, "+14155551007", "failed"))),
            ("failed_at", s("2026-01-01T10:00:11Z")),
            ("error_code", aws_sdk_dynamodb::types::AttributeValue::N("131026".into())),
            ("error_message", s("Message undeliverable")),
        ],
    )
    .await;

    // As the sender and the status applier leave them: the read one out of the status index
    // (it holds recipients to send and failed ones), the counters counting both.
    t.remove(recipient_pk(&id, "+14155551003"), "R#+14155551003", &["GSI2PK", "GSI2SK"]).await;
    let n = |v: u64| aws_sdk_dynamodb::types::AttributeValue::N(v.to_string());
    let counters = [
        ("sent_count", n(1)),
        ("delivered_count", n(1)),
        ("read_count", n(1)),
        ("failed_count", n(1)),
        ("processed_count", n(2)),
    ];
    t.set(format!("CAMPAIGN#{id}"), "#CAMPAIGN", &counters).await;

    let base = format!("/api/campaigns/{id}/recipients");
    let p1 = t.get(&format!("{base}?limit=10")).await;
    let d = p1.assert_ok(200);
    assert_eq!(
        (d["total"].as_u64(), d["limit"].as_u64(), d["items"].as_array().unwrap().len()),
        (Some(25), Some(10), 10)
    );
    let p3 = t.get(&format!("{base}?limit=10&page=3")).await;
    assert_eq!(p3.data()["items"].as_array().unwrap().len(), 5);
    assert_eq!(t.get(&base).await.data()["limit"], 50, "the spec's default page size for recipients");

    let pending = t.get(&format!("{base}?status=pending&limit=5&page=5")).await;
    let d = pending.assert_ok(200);
    assert_eq!((d["total"].as_u64(), d["items"].as_array().unwrap().len()), (Some(23), 3));
    let read = t.get(&format!("{base}?status=read")).await;
    let r = &read.data()["items"][0];
    assert_eq!(
        (read.data()["total"].as_u64(), r["read_at"].as_str(), r["name"].as_str()),
        (Some(1), Some("2026-01-01T10:01:00Z"), Some("N3"))
    );
    for empty in ["delivered", "sent", "sending"] {
        let none = t.get(&format!("{base}?status={empty}")).await;
        assert_eq!((none.data()["total"].as_u64(), none.data()["items"].as_array().unwrap().len()), (Some(0), 0));
    }
    let failed = t.get(&format!("{base}?status=failed")).await;
    assert_eq!(failed.data()["total"], 1);
    let f = &failed.data()["items"][0];
    assert_eq!((f["error_code"].as_i64(), f["error_message"].as_str()), (Some(131026), Some("Message undeliverable")));
    t.get(&format!("{base}?status=lost")).await.assert_error(400, "status must be one of");

    // By cursor: every recipient once, over the campaign's shards; the last page says so.
    let mut seen = std::collections::BTreeSet::new();
    let mut next = t.get(&format!("{base}?limit=7")).await.data().clone();
    assert_eq!(next["page"], 1);
    loop {
        for r in next["items"].as_array().unwrap() {
            assert!(seen.insert(r["phone_number"].as_str().unwrap().to_string()), "{r} twice");
        }
        let Some(cursor) = next["next_cursor"].as_str().map(str::to_string) else { break };
        next = t.get(&format!("{base}?limit=7&cursor={cursor}")).await.data().clone();
        assert_eq!((next["page"].clone(), next["total"].as_u64()), (json!(null), Some(25)));
    }
    assert_eq!(seen.len(), 25);
    let pending = t.get(&format!("{base}?status=pending&limit=20")).await;
    let cursor = pending.data()["next_cursor"].as_str().unwrap().to_string();
    let rest = t.get(&format!("{base}?status=pending&limit=20&cursor={cursor}")).await;
    assert_eq!(rest.data()["items"].as_array().unwrap().len(), 3);
    t.get(&format!("{base}?cursor=nonsense")).await.assert_error(400, "not one this API answered");
    t.get(&format!("{base}?cursor=")).await.assert_error(400, "cursor is empty");
    t.get(&format!("{base}?status=failed&cursor={cursor}")).await.assert_error(400, "not one this API answered");
    t.get(&format!("{base}?cursor={cursor}&page=2")).await.assert_error(400, "page or cursor");
    t.get(&format!("{base}?limit=100&page=100")).await.assert_ok(200);
    t.get(&format!("{base}?limit=100&page=101")).await.assert_error(400, "follow next_cursor");
}
