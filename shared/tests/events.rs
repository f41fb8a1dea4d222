//! Every function has a sample event in `events/`, and each one stays a valid event for it:
//! API Gateway events for the routes, SQS events carrying jobs for the queue consumers, the
//! input a campaign's schedule hands the scheduled start, the authorizer's request, the
//! bootstrap function's input and a request no route takes for the `$default` route.

use std::path::Path;

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use aws_lambda_events::event::sqs::SqsEvent;
use shared::domain::api_key::NewApiKey;
use shared::domain::delivery::Notification;
use shared::domain::job::Job;
use shared::domain::schedule::ScheduledStart;
use shared::domain::sending::{DispatchJob, SendJob};
use shared::http::{ROUTES, find};

fn event(name: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(format!("{name}.json"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn every_route_has_a_valid_sample_event() {
    let all: Vec<_> = ROUTES.iter().collect();
    for route in ROUTES {
        let req = lambda_http::request::from_str(&event(route.name)).unwrap_or_else(|e| panic!("{}: {e}", route.name));
        let (found, params) =
            find(&all, req.method(), req.uri().path()).unwrap_or_else(|e| panic!("{}: {}", route.name, e.message));
        assert_eq!(found.name, route.name, "events/{}.json is routed to another function", route.name);
        if route.path.contains("{id}") {
            assert!(params.iter().any(|(k, v)| k == "id" && !v.is_empty()), "{}", route.name);
        }
    }
}

#[test]
fn the_default_route_has_a_sample_that_no_route_takes() {
    let req = lambda_http::request::from_str(&event("unrouted")).unwrap();
    let res = shared::http::unrouted(req.method(), req.uri().path());
    assert_eq!(res.status(), 405, "{}", res.body());
    assert_eq!(res.headers()["allow"], "GET, POST");
}

#[test]
fn queue_consumers_have_sample_events_carrying_their_jobs() {
    let dispatch: SqsEvent = serde_json::from_str(&event("dispatcher")).unwrap();
    for r in &dispatch.records {
        let job: DispatchJob = serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap();
        assert!(!job.campaign_id.is_empty());
    }
    let send: SqsEvent = serde_json::from_str(&event("sender")).unwrap();
    for r in &send.records {
        let job: SendJob = serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap();
        assert!(!job.phones.is_empty() && !job.job_id.is_empty());
    }
    let statuses: SqsEvent = serde_json::from_str(&event("status-applier")).unwrap();
    for r in &statuses.records {
        let n: Notification = serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap();
        assert!(!n.statuses.is_empty() && n.received_at > 0);
    }
    let jobs: SqsEvent = serde_json::from_str(&event("background-jobs")).unwrap();
    for r in &jobs.records {
        let job: Job = serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap();
        assert!(matches!(job, Job::DeleteCampaign { campaign_id } if !campaign_id.is_empty()));
    }
    let imports: SqsEvent = serde_json::from_str(&event("import-worker")).unwrap();
    for r in &imports.records {
        let steps = shared::usecases::upload::steps(r.body.as_deref().unwrap_or_default()).unwrap();
        assert_eq!(steps.len(), 1, "the sample S3 notice names one upload");
        // S3 encodes the key as a form value; some encode its slashes too.
        let encoded = r.body.as_deref().unwrap_or_default().replace(
            "uploads/3f1c2d4e-0000-4000-8000-000000000003/",
            "uploads%2F3f1c2d4e-0000-4000-8000-000000000003%2F",
        );
        assert_eq!(shared::usecases::upload::steps(&encoded).unwrap(), steps);
    }
    assert!(!dispatch.records.is_empty() && !send.records.is_empty() && !statuses.records.is_empty());
    assert!(!jobs.records.is_empty() && !imports.records.is_empty());
}

#[test]
fn the_scheduled_start_has_a_sample_of_what_its_schedule_sends() {
    let start: ScheduledStart = serde_json::from_str(&event("scheduled-start")).unwrap();
    assert!(uuid::Uuid::parse_str(&start.campaign_id).is_ok());
    assert!(shared::domain::schedule::at_expression(&start.scheduled_at).is_some(), "{}", start.scheduled_at);
}

#[test]
fn the_authorizer_has_a_sample_request_for_a_keyed_route_carrying_a_key() {
    let req: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(&event("authorizer")).unwrap();
    assert!(shared::http::auth::presented_key(&req.headers).is_ok());
    let all: Vec<_> = ROUTES.iter().collect();
    let (method, path) = req.route_key.as_deref().and_then(|k| k.split_once(' ')).unwrap();
    let (route, _) = find(&all, &method.parse().unwrap(), path).unwrap_or_else(|e| panic!("{}", e.message));
    assert!(!route.public);
}

#[test]
fn the_reconciler_has_a_sample_of_what_its_schedule_sends() {
    // EventBridge Scheduler invokes it without an input of its own: an empty object.
    let input: serde_json::Value = serde_json::from_str(&event("reconciler")).unwrap();
    assert_eq!(input, serde_json::json!({}));
}

#[test]
fn the_bootstrap_function_has_a_sample_input() {
    let new: NewApiKey = serde_json::from_str(&event("bootstrap-api-key")).unwrap();
    assert!(!new.name.is_empty());
}

#[test]
fn there_is_one_event_per_function_and_no_other() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let functions = shared::lambda::function_names();
    let mut events: Vec<String> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap().trim_end_matches(".json").to_string())
        .collect();
    events.sort();
    assert_eq!(functions, events);
}
