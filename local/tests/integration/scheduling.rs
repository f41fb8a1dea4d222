//! Scheduled starts: the schedule a scheduled campaign gets in EventBridge Scheduler (the
//! emulator), how it follows changes, cancels and deletes, the scheduled-start handler's
//! idempotency, and a campaign that starts and completes by itself in the local stack.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindowMode, ScheduleState};
use chrono::{FixedOffset, SecondsFormat, Utc};
use serde_json::{Value, json};
use shared::usecases::schedule::{Fired, scheduled_start};

use crate::stack::{TestStack, phones, s};

/// `seconds` from now, written with a +02:00 offset (any RFC 3339 offset is accepted), and the
/// same time in UTC as the API shows it.
fn later(seconds: i64) -> (String, String) {
    let t = Utc::now() + chrono::Duration::seconds(seconds);
    let plus_two = FixedOffset::east_opt(2 * 3600).unwrap();
    (
        t.with_timezone(&plus_two).to_rfc3339_opts(SecondsFormat::Secs, false),
        t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// `at(...)` of a UTC time shown by the API.
fn at(utc: &str) -> String {
    format!("at({})", utc.trim_end_matches('Z'))
}

async fn set_time(t: &TestStack, c: &str, time: Value) -> Value {
    t.put(&format!("/api/campaigns/{c}"), json!({ "scheduled_at": time })).await.assert_ok(200).clone()
}

async fn start(t: &TestStack, c: &str) -> Value {
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_ok(200).clone()
}

async fn campaign(t: &TestStack, c: &str) -> Value {
    t.get(&format!("/api/campaigns/{c}")).await.data().clone()
}

/// What the schedule would hand the scheduled-start function.
fn fire_input(c: &str, scheduled_at: &str) -> Value {
    json!({ "campaign_id": c, "scheduled_at": scheduled_at })
}

#[tokio::test]
async fn start_with_a_future_time_creates_a_one_time_utc_schedule() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_1K", &phones(2000, 3)).await;
    let (local, utc) = later(86_400);
    assert_eq!(set_time(&t, &c, json!(local)).await["scheduled_at"], utc.as_str(), "stored and shown in UTC");
    assert!(t.schedule(&c).await.is_none(), "a draft with a time has no schedule until it is started");

    let scheduled = start(&t, &c).await;
    assert_eq!((scheduled["status"].as_str(), scheduled["started_at"].as_str()), (Some("scheduled"), None));
    assert_eq!(campaign(&t, &c).await["status"], "scheduled");
    let listed = t.get("/api/campaigns?status=scheduled").await;
    assert_eq!(listed.data()["items"][0]["id"], c.as_str(), "listed under its status");

    let sch = t.schedule(&c).await.expect("the campaign has a schedule");
    assert_eq!(sch.name(), Some(format!("campaign-{c}").as_str()));
    assert_eq!(sch.group_name(), Some(t.app.scheduler.group()));
    assert_eq!(sch.schedule_expression(), Some(at(&utc).as_str()));
    assert_eq!(sch.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(sch.flexible_time_window().map(|w| w.mode()), Some(&FlexibleTimeWindowMode::Off));
    assert_eq!(sch.action_after_completion(), Some(&ActionAfterCompletion::Delete));
    assert_eq!(sch.state(), Some(&ScheduleState::Enabled));
    let target = sch.target().unwrap();
    assert_eq!(Some(target.arn()), t.app.config.scheduled_start_function_arn.as_deref());
    assert!(target.arn().ends_with("-ScheduledStartFunction") && target.arn().starts_with("arn:aws:lambda:"));
    assert_eq!(Some(target.role_arn()), t.app.config.scheduler_role_arn.as_deref());
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input, fire_input(&c, &utc));
    let retry = target.retry_policy().unwrap();
    assert_eq!((retry.maximum_retry_attempts(), retry.maximum_event_age_in_seconds()), (Some(10), Some(3600)));
    let dlq = target.dead_letter_config().and_then(|d| d.arn()).unwrap();
    assert!(dlq.ends_with("-ScheduleDeadLetterQueue"), "{dlq}");

    assert_eq!(t.queued("DispatchQueue").await, 0, "nothing is dispatched before the time");
    t.post(&format!("/api/campaigns/{c}/start"), json!({}))
        .await
        .assert_error(409, "is scheduled; it starts by itself at");
    t.post(&format!("/api/campaigns/{c}/pause"), json!({})).await.assert_error(409, "is scheduled");
}

#[tokio::test]
async fn scheduling_checks_what_starting_checks() {
    let t = TestStack::sending(0).await;
    let (c, account) = t.campaign_with("TIER_1K", &phones(2100, 1)).await;
    let (local, _) = later(3600);
    let empty = t.another_campaign(&account, &[]).await;
    set_time(&t, &empty, json!(local)).await;
    t.post(&format!("/api/campaigns/{empty}/start"), json!({})).await.assert_error(422, "no recipients");
    assert!(t.schedule(&empty).await.is_none());
    assert_eq!(campaign(&t, &empty).await["status"], "draft");

    set_time(&t, &c, json!(local)).await;
    let template = campaign(&t, &c).await["template_id"].as_str().unwrap().to_string();
    t.delete(&format!("/api/templates/{template}")).await.assert_ok(200);
    t.post(&format!("/api/campaigns/{c}/start"), json!({})).await.assert_error(422, "template_id");
    assert!(t.schedule(&c).await.is_none());
    assert_eq!(campaign(&t, &c).await["status"], "draft");
}

#[tokio::test]
async fn a_new_time_moves_the_schedule_and_clearing_it_returns_the_campaign_to_draft() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_1K", &phones(2200, 2)).await;
    let (first, _) = later(3600);
    set_time(&t, &c, json!(first)).await;
    start(&t, &c).await;

    let (moved_local, moved) = later(7200);
    let updated = set_time(&t, &c, json!(moved_local)).await;
    assert_eq!(
        (updated["status"].as_str(), updated["scheduled_at"].as_str()),
        (Some("scheduled"), Some(moved.as_str()))
    );
    let sch = t.schedule(&c).await.unwrap();
    assert_eq!(sch.schedule_expression(), Some(at(&moved).as_str()), "the schedule follows");
    let input: Value = serde_json::from_str(sch.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(input, fire_input(&c, &moved));
    assert_eq!(sch.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(sch.flexible_time_window().map(|w| w.mode()), Some(&FlexibleTimeWindowMode::Off));

    // Other fields change as on a draft; a past time is refused and nothing moves.
    let renamed = t.put(&format!("/api/campaigns/{c}"), json!({"name": "Renamed"})).await;
    assert_eq!(
        (renamed.assert_ok(200)["name"].as_str(), renamed.data()["status"].as_str()),
        (Some("Renamed"), Some("scheduled"))
    );
    t.put(&format!("/api/campaigns/{c}"), json!({"scheduled_at": "2020-01-01T00:00:00Z"}))
        .await
        .assert_error(422, "scheduled_at: 2020-01-01T00:00:00Z is in the past");
    t.put(&format!("/api/campaigns/{c}"), json!({"scheduled_at": "at noon"})).await.assert_error(422, "scheduled_at");
    assert_eq!(campaign(&t, &c).await["scheduled_at"], moved.as_str());
    assert_eq!(t.schedule(&c).await.unwrap().schedule_expression(), Some(at(&moved).as_str()));

    let cleared = set_time(&t, &c, Value::Null).await;
    assert_eq!((cleared["status"].as_str(), cleared["scheduled_at"].as_str()), (Some("draft"), None));
    assert!(t.schedule(&c).await.is_none(), "clearing the time deletes the schedule");
    assert_eq!(t.get("/api/campaigns?status=scheduled").await.data()["total"], 0);
}

#[tokio::test]
async fn cancel_and_delete_remove_the_schedule() {
    let t = TestStack::sending(0).await;
    let (cancelled, account) = t.campaign_with("TIER_1K", &phones(2300, 2)).await;
    let deleted = t.another_campaign(&account, &phones(2310, 2)).await;
    let gone = t.another_campaign(&account, &phones(2320, 2)).await;
    let (local, _) = later(3600);
    for c in [&cancelled, &deleted, &gone] {
        set_time(&t, c, json!(local)).await;
        start(&t, c).await;
        assert!(t.schedule(c).await.is_some());
    }
    let c = t.post(&format!("/api/campaigns/{cancelled}/cancel"), json!({})).await;
    assert_eq!(c.assert_ok(200)["status"], "cancelled");
    assert!(t.schedule(&cancelled).await.is_none(), "cancel deletes the schedule");

    t.delete(&format!("/api/campaigns/{deleted}")).await.assert_ok(200);
    assert!(t.schedule(&deleted).await.is_none(), "delete deletes the schedule");
    t.get(&format!("/api/campaigns/{deleted}")).await.assert_error(404, "not found");

    // A schedule already gone (fired, or removed by hand) is no obstacle.
    assert!(t.app.scheduler.delete_start(&gone).await.unwrap());
    assert!(!t.app.scheduler.delete_start(&gone).await.unwrap(), "deleting it twice is fine");
    let c = t.post(&format!("/api/campaigns/{gone}/cancel"), json!({})).await;
    assert_eq!(c.assert_ok(200)["status"], "cancelled");
    t.delete(&format!("/api/campaigns/{gone}")).await.assert_ok(200);
}

#[tokio::test]
async fn a_fire_starts_the_campaign_once_however_often_it_comes() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_1K", &phones(2400, 3)).await;
    let (local, utc) = later(3600);
    set_time(&t, &c, json!(local)).await;
    start(&t, &c).await;

    // Two fires at once (EventBridge Scheduler delivers at least once), then a third.
    let input = fire_input(&c, &utc);
    let (a, b) = tokio::join!(scheduled_start(&t.app, input.clone()), scheduled_start(&t.app, input.clone()));
    let outcomes = [a.unwrap(), b.unwrap()];
    let started = outcomes.iter().filter(|f| matches!(f, Fired::Started { .. })).count();
    assert_eq!(started, 1, "{outcomes:?}");
    let sending = campaign(&t, &c).await;
    assert_eq!(sending["status"], "sending");
    let started_at = sending["started_at"].as_str().unwrap().to_string();
    let third = scheduled_start(&t.app, input).await.unwrap();
    assert!(matches!(&third, Fired::Ignored { reason } if reason.contains("is sending")), "{third:?}");
    assert_eq!(campaign(&t, &c).await["started_at"], started_at.as_str(), "started once");
    assert_eq!(t.queued("DispatchQueue").await, 1, "one dispatch for the campaign");
    let events: Vec<String> =
        t.events().await.into_iter().filter(|(_, d)| d["campaign_id"] == c.as_str()).map(|(n, _)| n).collect();
    assert_eq!(events, ["CampaignStarted"], "one start announced");
}

#[tokio::test]
async fn stale_or_foreign_fires_do_nothing() {
    let t = TestStack::sending(0).await;
    let (c, account) = t.campaign_with("TIER_1K", &phones(2500, 2)).await;
    let (first_local, first) = later(3600);
    set_time(&t, &c, json!(first_local)).await;
    start(&t, &c).await;
    let (moved_local, moved) = later(7200);
    set_time(&t, &c, json!(moved_local)).await;

    // The schedule's old time fires late (it had been read before the move).
    let old = scheduled_start(&t.app, fire_input(&c, &first)).await.unwrap();
    assert!(matches!(&old, Fired::Ignored { reason } if reason.contains(&format!("scheduled for {moved}"))), "{old:?}");
    let now = campaign(&t, &c).await;
    assert_eq!((now["status"].as_str(), now["started_at"].as_str()), (Some("scheduled"), None));

    // Cleared back to draft, then cancelled: neither time starts it.
    let draft = t.another_campaign(&account, &phones(2510, 2)).await;
    let (draft_local, draft_at) = later(3600);
    set_time(&t, &draft, json!(draft_local)).await;
    start(&t, &draft).await;
    set_time(&t, &draft, Value::Null).await;
    let fired = scheduled_start(&t.app, fire_input(&draft, &draft_at)).await.unwrap();
    assert!(matches!(&fired, Fired::Ignored { reason } if reason.contains("is draft")), "{fired:?}");
    assert_eq!(campaign(&t, &draft).await["status"], "draft");

    t.post(&format!("/api/campaigns/{c}/cancel"), json!({})).await.assert_ok(200);
    let fired = scheduled_start(&t.app, fire_input(&c, &moved)).await.unwrap();
    assert!(matches!(&fired, Fired::Ignored { reason } if reason.contains("is cancelled")), "{fired:?}");
    assert_eq!(campaign(&t, &c).await["status"], "cancelled");

    // Input that is not a start, or names nothing, is logged and ignored, never an error.
    for junk in [
        json!({"hello": "world"}),
        json!("campaign"),
        fire_input("0b6f4c6e-0000-4000-8000-000000000000", &moved),
        fire_input("not-a-uuid", &moved),
        fire_input(&draft, "tomorrow"),
    ] {
        let fired = scheduled_start(&t.app, junk.clone()).await;
        assert!(matches!(fired, Ok(Fired::Ignored { .. })), "{junk}: {fired:?}");
    }
    assert_eq!(t.queued("DispatchQueue").await, 0, "nothing was dispatched");
}

#[tokio::test]
async fn an_old_fire_puts_back_a_lost_schedule_and_starts_a_campaign_whose_time_has_come() {
    let t = TestStack::sending(0).await;
    let (c, _) = t.campaign_with("TIER_1K", &phones(2550, 2)).await;
    let (first_local, first) = later(3600);
    set_time(&t, &c, json!(first_local)).await;
    start(&t, &c).await;
    let (moved_local, moved) = later(7200);
    set_time(&t, &c, json!(moved_local)).await;
    // Updates racing each other can leave a campaign without its own schedule; here it is
    // simply deleted, while the old time still fires.
    assert!(t.app.scheduler.delete_start(&c).await.unwrap());
    let old = scheduled_start(&t.app, fire_input(&c, &first)).await.unwrap();
    assert!(matches!(&old, Fired::Ignored { reason } if reason.contains(&format!("stays at {moved}"))), "{old:?}");
    let sch = t.schedule(&c).await.expect("the campaign's own schedule is back");
    assert_eq!(sch.schedule_expression(), Some(at(&moved).as_str()));
    let input: Value = serde_json::from_str(sch.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(input, fire_input(&c, &moved));
    assert_eq!(campaign(&t, &c).await["status"], "scheduled");
    assert_eq!(t.queued("DispatchQueue").await, 0, "nothing was dispatched");

    // The campaign's own time has come too, and its fire is lost: an old fire starts it.
    let past = "2024-01-01T00:00:00Z";
    t.set(format!("CAMPAIGN#{c}"), "#CAMPAIGN", &[("scheduled_at", s(past))]).await;
    let fired = scheduled_start(&t.app, fire_input(&c, &first)).await.unwrap();
    assert!(matches!(&fired, Fired::Started { campaign_id } if campaign_id == &c), "{fired:?}");
    let started = campaign(&t, &c).await;
    assert_eq!((started["status"].as_str(), started["scheduled_at"].as_str()), (Some("sending"), Some(past)));
    assert_eq!(t.queued("DispatchQueue").await, 1);
    let again = scheduled_start(&t.app, fire_input(&c, past)).await.unwrap();
    assert!(matches!(&again, Fired::Ignored { reason } if reason.contains("is sending")), "{again:?}");
}

#[tokio::test]
async fn a_time_already_past_starts_now_and_a_scheduled_campaign_whose_time_came_can_be_started() {
    let t = TestStack::sending(0).await;
    let (c, account) = t.campaign_with("TIER_1K", &phones(2600, 2)).await;
    set_time(&t, &c, json!("2024-01-01T10:00:00+01:00")).await;
    let started = start(&t, &c).await;
    assert_eq!(
        (started["status"].as_str(), started["scheduled_at"].as_str()),
        (Some("sending"), Some("2024-01-01T09:00:00Z"))
    );
    assert!(t.schedule(&c).await.is_none(), "no schedule for a time already past");
    assert_eq!(t.queued("DispatchQueue").await, 1);

    // Scheduled a moment ahead; started by hand once its time has come (the fire was missed):
    // it starts now, its schedule goes, and the late fire finds nothing to do.
    let late = t.another_campaign(&account, &phones(2610, 2)).await;
    let (soon_local, soon) = later(5);
    set_time(&t, &late, json!(soon_local)).await;
    assert_eq!(start(&t, &late).await["status"], "scheduled");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(start(&t, &late).await["status"], "sending");
    assert!(t.schedule(&late).await.is_none());
    let fired = scheduled_start(&t.app, fire_input(&late, &soon)).await.unwrap();
    assert!(matches!(fired, Fired::Ignored { .. }), "{fired:?}");
    assert_eq!(t.queued("DispatchQueue").await, 2);
}

#[tokio::test]
async fn a_campaign_that_cannot_be_sent_at_its_time_returns_to_draft_and_an_import_delays_the_start() {
    let t = TestStack::sending(0).await;
    let (c, account) = t.campaign_with("TIER_1K", &phones(2700, 2)).await;
    let (local, utc) = later(3600);
    set_time(&t, &c, json!(local)).await;
    start(&t, &c).await;
    let template = campaign(&t, &c).await["template_id"].as_str().unwrap().to_string();
    t.delete(&format!("/api/templates/{template}")).await.assert_ok(200);
    let fired = scheduled_start(&t.app, fire_input(&c, &utc)).await.unwrap();
    assert!(matches!(&fired, Fired::ReturnedToDraft { reason, .. } if reason.contains("template_id")), "{fired:?}");
    let draft = campaign(&t, &c).await;
    assert_eq!(draft["status"], "draft");
    assert!(
        draft["schedule_error"].as_str().unwrap().contains(&format!("the scheduled start at {utc} failed")),
        "{draft}"
    );

    // An import running at the time: the start fails (Lambda retries it) and succeeds afterwards.
    let other = t.another_campaign(&account, &phones(2710, 2)).await;
    set_time(&t, &other, json!(local)).await;
    start(&t, &other).await;
    let lock_until = aws_sdk_dynamodb::types::AttributeValue::N((Utc::now().timestamp() + 60).to_string());
    t.set(format!("CAMPAIGN#{other}"), "#CAMPAIGN", &[("import_lock_until", lock_until), ("import_lock", s("x"))])
        .await;
    let blocked = scheduled_start(&t.app, fire_input(&other, &utc)).await;
    assert!(blocked.as_ref().is_err_and(|e| e.to_string().contains("importing")), "{blocked:?}");
    assert_eq!(campaign(&t, &other).await["status"], "scheduled");
    let released = aws_sdk_dynamodb::types::AttributeValue::N("0".into());
    t.set(format!("CAMPAIGN#{other}"), "#CAMPAIGN", &[("import_lock_until", released)]).await;
    let retried = scheduled_start(&t.app, fire_input(&other, &utc)).await.unwrap();
    assert!(matches!(retried, Fired::Started { .. }), "{retried:?}");
    assert_eq!(campaign(&t, &other).await["status"], "sending");
}

#[tokio::test]
async fn a_scheduled_campaign_starts_and_completes_by_itself_in_the_local_stack() {
    let t = TestStack::sending(2).await;
    t.fire_schedules();
    let numbers = phones(2800, 6);
    let (c, _) = t.campaign_with("TIER_100K", &numbers).await;
    // Far enough ahead (the time is cut to whole seconds) that a slow machine still checks
    // before it.
    let (local, utc) = later(8);
    set_time(&t, &c, json!(local)).await;
    assert_eq!(start(&t, &c).await["status"], "scheduled");
    // Nothing goes out before the time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(campaign(&t, &c).await["status"], "scheduled");
    assert!(t.fake.requests().is_empty());

    let done = t.wait_for(&c, Duration::from_secs(40), |c| c["status"] == "completed").await;
    assert_eq!((done["sent_count"].as_u64(), done["failed_count"].as_u64()), (Some(6), Some(0)));
    let started_at = done["started_at"].as_str().unwrap();
    assert!(started_at >= utc.as_str(), "started at {started_at}, scheduled for {utc}");
    let mut hits: HashMap<String, usize> = HashMap::new();
    for r in t.fake.requests() {
        let to = r.to.clone().unwrap_or_default();
        *hits.entry(format!("+{}", to.trim_start_matches('+'))).or_default() += 1;
    }
    assert_eq!(hits.len(), 6, "{hits:?}");
    assert!(numbers.iter().all(|p| hits.get(p) == Some(&1)), "each number exactly once: {hits:?}");
    assert!(t.schedule(&c).await.is_none(), "the fired schedule was deleted (ActionAfterCompletion DELETE)");
}
