use std::time::Duration;

use serde_json::json;
use shared::domain::id::Id;

use crate::stack::TestStack;

#[tokio::test]
async fn a_campaign_is_created_with_checked_references_and_read_back() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let template = t.template(&account, "offer", "APPROVED").await;
    let body = json!({"name": "New Year Sale", "account_id": account, "template_id": template,
                      "variable_mapping": {"1": "name", "2": "discount_code"},
                      "scheduled_at": "2027-01-01T09:00:00+01:00"});
    let created = t.post("/api/campaigns", body).await;
    let c = created.assert_ok(201).clone();
    assert_eq!((c["status"].as_str(), c["scheduled_at"].as_str()), (Some("draft"), Some("2027-01-01T08:00:00Z")));
    assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
    let id = c["id"].as_str().unwrap();

    let got = t.get(&format!("/api/campaigns/{id}")).await;
    let g = got.assert_ok(200);
    assert_eq!(g["template_name"], "offer");
    assert_eq!(g["variable_mapping"], json!({"1": "name", "2": "discount_code"}));
    for counter in ["total_recipients", "sent_count", "delivered_count", "read_count", "failed_count"] {
        assert_eq!(g[counter], 0, "{counter}");
    }
    assert!(g["started_at"].is_null() && g["completed_at"].is_null());
}

#[tokio::test]
async fn create_refuses_unusable_references_and_mappings() {
    let t = TestStack::new().await;
    let account = t.account("TIER_1K").await;
    let other = t.account("TIER_1K").await;
    let approved = t.template(&account, "offer", "APPROVED").await;
    let pending = t.template(&account, "draft_offer", "PENDING").await;
    let foreign = t.template(&other, "offer", "APPROVED").await;
    let body = |account: &str, template: &str, mapping: serde_json::Value| json!({"name": "Sale", "account_id": account, "template_id": template, "variable_mapping": mapping});
    let full = json!({"1": "name", "2": "code"});
    let missing = "0b6f4c6e-0000-4000-8000-000000000000";
    t.post("/api/campaigns", body(missing, &approved, full.clone())).await.assert_error(422, "account_id");
    t.post("/api/campaigns", body(&account, missing, full.clone())).await.assert_error(422, "template_id");
    t.post("/api/campaigns", body(&account, &foreign, full.clone())).await.assert_error(422, "another account");
    t.post("/api/campaigns", body(&account, &pending, full.clone())).await.assert_error(422, "PENDING");
    t.post("/api/campaigns", body(&account, &approved, json!({"1": "name"}))).await.assert_error(422, "missing: 2");
    t.post("/api/campaigns", body(&account, &approved, json!({"1": "a", "2": "b", "3": "c"})))
        .await
        .assert_error(422, "3");
    t.post("/api/campaigns", body(&account, &approved, json!({"1": "a", "2": 5})))
        .await
        .assert_error(400, "variable_mapping.2");
    let mut bad_time = body(&account, &approved, full.clone());
    bad_time["scheduled_at"] = json!("next monday");
    t.post("/api/campaigns", bad_time).await.assert_error(422, "scheduled_at");
    assert_eq!(t.get("/api/campaigns").await.assert_ok(200)["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn campaigns_list_filters_by_status_and_account() {
    let t = TestStack::new().await;
    let (c1, account, template) = t.campaign().await;
    let mut ids = vec![c1.clone()];
    for _ in 0..2 {
        let body = json!({"name": "More", "account_id": account, "template_id": template,
                          "variable_mapping": {"1": "name", "2": "code"}});
        ids.push(t.post("/api/campaigns", body).await.assert_ok(201)["id"].as_str().unwrap().to_string());
    }
    let (_, other_account, _) = t.campaign().await;
    t.set_campaign_status(&c1, "completed").await;

    let total = |a: &crate::stack::Answer| a.data()["total"].as_u64().unwrap();
    assert_eq!(total(&t.get("/api/campaigns").await), 4);
    assert_eq!(total(&t.get(&format!("/api/campaigns?account_id={account}")).await), 3);
    assert_eq!(total(&t.get(&format!("/api/campaigns?account_id={other_account}")).await), 1);
    assert_eq!(total(&t.get("/api/campaigns?status=draft").await), 3);
    let done = t.get(&format!("/api/campaigns?status=completed&account_id={account}")).await;
    assert_eq!(total(&done), 1);
    assert_eq!(done.data()["items"][0]["id"], c1.as_str());
    assert_eq!(done.data()["items"][0]["status"], "completed");
    let page2 = t.get(&format!("/api/campaigns?account_id={account}&limit=2&page=2")).await;
    assert_eq!(page2.assert_ok(200)["items"].as_array().unwrap().len(), 1);
    // The same by cursor, newest first, each once; the last page says there is no more.
    let mut seen = Vec::new();
    let mut at = t.get(&format!("/api/campaigns?account_id={account}&limit=1")).await.data().clone();
    loop {
        seen.extend(at["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        let Some(cursor) = at["next_cursor"].as_str().map(str::to_string) else { break };
        at = t.get(&format!("/api/campaigns?account_id={account}&limit=1&cursor={cursor}")).await.data().clone();
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen.iter().collect::<std::collections::BTreeSet<_>>(), ids.iter().collect());
    let first = t.get(&format!("/api/campaigns?account_id={account}&limit=1")).await;
    let cursor = first.data()["next_cursor"].as_str().unwrap().to_string();
    t.get(&format!("/api/campaigns?account_id={other_account}&cursor={cursor}")).await.assert_error(400, "cursor");
}

#[tokio::test]
async fn only_drafts_are_updated_and_references_are_checked_again() {
    let t = TestStack::new().await;
    let (id, account, _) = t.campaign().await;
    let path = format!("/api/campaigns/{id}");
    let renamed = t.put(&path, json!({"name": "Renamed", "scheduled_at": "2027-03-01T12:00:00-03:00"})).await;
    let r = renamed.assert_ok(200);
    assert_eq!((r["name"].as_str(), r["scheduled_at"].as_str()), (Some("Renamed"), Some("2027-03-01T15:00:00Z")));
    assert_eq!(t.put(&path, json!({"scheduled_at": null})).await.assert_ok(200)["scheduled_at"], json!(null));
    t.put(&path, json!({"variable_mapping": {"1": "name"}})).await.assert_error(422, "missing: 2");
    t.put(&path, json!({"status": "sending"})).await.assert_error(422, "unknown field 'status'");

    let named = t
        .post(
            "/api/templates",
            json!({"account_id": account, "name": "named_offer", "language": "en",
        "category": "MARKETING", "status": "APPROVED", "parameter_format": "named",
        "components": [{"type": "BODY", "text": "Hi {{first_name}}"}]}),
        )
        .await;
    let named_id = named.assert_ok(201)["id"].as_str().unwrap().to_string();
    let switched = t.put(&path, json!({"template_id": named_id, "variable_mapping": {"first_name": "name"}})).await;
    assert_eq!(switched.assert_ok(200)["template_name"], "named_offer");
    assert_eq!(t.get(&path).await.data()["template_name"], "named_offer");

    t.set_campaign_status(&id, "paused").await;
    t.put(&path, json!({"name": "Again"})).await.assert_error(409, "is paused");
    assert_eq!(t.get(&path).await.data()["name"], "Renamed");
}

#[tokio::test]
async fn delete_removes_the_recipients_but_not_while_sending() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let path = format!("/api/campaigns/{id}");
    let csv = "phone_number,name,discount_code\n+14155550101,A,X\n+14155550102,B,Y\n+14155550103,C,Z\n";
    t.post_csv(&format!("{path}/recipients/import"), csv).await.assert_ok(200);
    assert_eq!(t.count_recipient_items(&id).await, 3);

    t.set_campaign_status(&id, "sending").await;
    t.delete(&path).await.assert_error(409, "is sending");
    assert_eq!(t.count_recipient_items(&id).await, 3);

    t.set_campaign_status(&id, "paused").await;
    let deleted = t.delete(&path).await;
    assert_eq!(deleted.assert_ok(200)["recipients_deleted"], 3);
    // Gone for the API at once; its items go in the background.
    t.get(&path).await.assert_error(404, "not found");
    t.delete(&path).await.assert_error(404, "not found");
    let listed = t.get("/api/campaigns?limit=100").await;
    assert!(listed.data()["items"].as_array().unwrap().iter().all(|c| c["id"] != id.as_str()));
    assert_eq!(t.queued("JobQueue").await, 1);
    let _workers = t.spawn_workers(1);
    t.eventually(Duration::from_secs(20), "the deleted campaign's items are removed", || async {
        t.count_recipient_items(&id).await == 0 && t.count_items(format!("CAMPAIGN#{id}"), "").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_big_deleted_campaign_is_removed_over_several_jobs_each_going_on_where_the_last_stopped() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    let mut csv = String::from("phone_number,name,discount_code\n");
    for i in 0..2_600 {
        csv.push_str(&format!("+1415{:07},N,C\n", 5_000_000 + i));
    }
    let path = format!("/api/campaigns/{id}");
    assert_eq!(t.post_csv(&format!("{path}/recipients/import"), csv).await.assert_ok(200)["imported"], 2_600);
    t.delete(&path).await.assert_ok(200);
    // A job whose function is about to time out removes one step's worth and queues the next.
    let removed =
        shared::usecases::campaigns::purge(&t.app, &Id::stored(id.clone()), std::time::Instant::now()).await.unwrap();
    assert!((2_000..2_600).contains(&removed), "{removed} removed in the first step");
    assert_eq!(t.count_recipient_items(&id).await as usize, 2_600 - removed);
    assert_eq!(t.queued("JobQueue").await, 2, "the DELETE's job and the one that goes on");
    assert!(t.count_items(format!("CAMPAIGN#{id}"), "#CAMPAIGN").await == 1, "the campaign item goes last");
    let _workers = t.spawn_workers(1);
    t.eventually(Duration::from_secs(30), "the rest is removed by the queued jobs", || async {
        t.count_recipient_items(&id).await == 0 && t.count_items(format!("CAMPAIGN#{id}"), "").await == 0
    })
    .await;
}

#[tokio::test]
async fn a_deletion_whose_job_was_lost_is_queued_again_by_the_reconciler() {
    let t = TestStack::new().await;
    let (id, _, _) = t.campaign().await;
    t.delete(&format!("/api/campaigns/{id}")).await.assert_ok(200);
    // The job is lost, and no progress was noted for long.
    t.sqs.purge_queue().queue_url(&t.queues["JobQueue"]).send().await.unwrap();
    let reconciled = shared::usecases::send::reconcile(&t.app).await.unwrap();
    assert_eq!((reconciled.deletions_resumed, t.queued("JobQueue").await), (0, 0), "recent progress: left alone");
    let old = aws_sdk_dynamodb::types::AttributeValue::N("1".into());
    t.set(format!("CAMPAIGN#{id}"), "#CAMPAIGN", &[("deleting_noted", old)]).await;
    let reconciled = shared::usecases::send::reconcile(&t.app).await.unwrap();
    assert_eq!((reconciled.deletions_resumed, t.queued("JobQueue").await), (1, 1));
    let _workers = t.spawn_workers(1);
    t.eventually(Duration::from_secs(20), "the campaign's items are removed", || async {
        t.count_items(format!("CAMPAIGN#{id}"), "").await == 0
    })
    .await;
}
