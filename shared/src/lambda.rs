//! What the function binary's `main` calls: which function it is ([`function_name`], from the
//! `Handler` in template.yaml), then read the configuration, build the clients once, and serve
//! one route of [`crate::http::ROUTES`], consume one queue, or take JSON events ([`serve`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::config::init_tracing;
use crate::http as api;
use crate::usecases::send::{Consumer, Incoming};

pub type Error = lambda_http::Error;

/// Runs `serve` on a runtime with tracing and the application built once: what every
/// function's runtime loop needs before its first event.
fn run_with_app<F, Fut>(serve: F) -> Result<(), Error>
where
    F: FnOnce(Arc<App>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        init_tracing();
        serve(App::from_env().await).await
    })
}

/// What a function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// A route (or the webhook's two) of [`crate::http::ROUTES`]; the function has its name.
    Route(&'static str),
    Authorizer,
    BootstrapApiKey,
    BackgroundJobs,
    Dispatcher,
    /// Imports uploaded recipient files (the bucket's notices on the import queue).
    ImportWorker,
    Reconciler,
    ScheduledStart,
    Sender,
    StatusApplier,
    /// Counts marked changes from the table's stream.
    Tally,
    Unrouted,
}

/// The functions that are not a route.
const OTHER_FUNCTIONS: &[(&str, Function)] = &[
    ("authorizer", Function::Authorizer),
    ("bootstrap-api-key", Function::BootstrapApiKey),
    ("background-jobs", Function::BackgroundJobs),
    ("dispatcher", Function::Dispatcher),
    ("import-worker", Function::ImportWorker),
    ("reconciler", Function::Reconciler),
    ("scheduled-start", Function::ScheduledStart),
    ("sender", Function::Sender),
    ("status-applier", Function::StatusApplier),
    ("tally", Function::Tally),
    ("unrouted", Function::Unrouted),
];

impl Function {
    pub fn named(name: &str) -> Option<Function> {
        let route = api::ROUTES.iter().find(|r| r.name == name).map(|r| Function::Route(r.name));
        route.or_else(|| OTHER_FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f))
    }
}

/// Every function's name: the routes' and the others.
pub fn function_names() -> Vec<&'static str> {
    let routes = api::ROUTES.iter().map(|r| r.name);
    let mut names: Vec<&str> = routes.chain(OTHER_FUNCTIONS.iter().map(|(n, _)| *n)).collect();
    names.sort();
    names.dedup();
    names
}

/// The function this process is: the `Handler` of its resource in template.yaml, which Lambda
/// passes to a custom runtime as `_HANDLER` (or, when that is not set, the first argument).
pub fn function_name() -> Option<String> {
    std::env::var("_HANDLER").ok().or_else(|| std::env::args().nth(1)).filter(|n| !n.is_empty())
}

/// Runs the Lambda runtime loop of the function named `name`. Every function is the same
/// binary; this is where a name becomes a function.
pub fn serve(name: &str) -> Result<(), Error> {
    use crate::usecases::{schedule, send};
    let Some(function) = Function::named(name) else {
        return Err(format!("no function named {name}; the functions are {}", function_names().join(", ")).into());
    };
    match function {
        Function::Route(name) => serve_route(name),
        Function::Authorizer => serve_event(api::auth::authorizer),
        Function::BootstrapApiKey => serve_event(api::auth::bootstrap),
        Function::BackgroundJobs => serve_queue(Consumer::Jobs),
        Function::Dispatcher => serve_queue(Consumer::Dispatcher),
        Function::ImportWorker => serve_queue(Consumer::Imports),
        Function::Reconciler => serve_event(|app, _event| async move { send::reconcile(&app).await }),
        Function::ScheduledStart => serve_event(schedule::handle),
        Function::Sender => serve_queue(Consumer::Sender),
        Function::StatusApplier => serve_queue(Consumer::Statuses),
        Function::Tally => serve_event(crate::usecases::tally::handle),
        Function::Unrouted => serve_unrouted(),
    }
}

/// Runs the Lambda runtime loop for the route named `name`.
fn serve_route(name: &str) -> Result<(), Error> {
    let routes = api::routes(name);
    run_with_app(|app| async move {
        lambda_http::run(service_fn(|req: Request| {
            let (app, routes) = (app.clone(), routes.clone());
            async move { Ok::<_, Error>(answer(app, &routes, req).await) }
        }))
        .await
    })
}

/// Runs the Lambda runtime loop of the HTTP API's `$default` route (the `unrouted` function):
/// what matches no route is answered 404 or 405 in the envelope. It reads nothing, so it
/// builds no clients.
fn serve_unrouted() -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        init_tracing();
        lambda_http::run(service_fn(|req: Request| async move {
            let req = from_lambda(req);
            Ok::<_, Error>(to_lambda(api::unrouted(req.method(), req.uri().path())))
        }))
        .await
    })
}

/// Runs the Lambda runtime loop of an SQS-triggered function (with `ReportBatchItemFailures`:
/// only the messages that failed are delivered again).
fn serve_queue(consumer: Consumer) -> Result<(), Error> {
    run_with_app(|app| async move {
        lambda_http::lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
            let app = app.clone();
            async move {
                let left_ms =
                    event.context.deadline.saturating_sub(chrono::Utc::now().timestamp_millis().max(0) as u64);
                let deadline = Instant::now() + Duration::from_millis(left_ms);
                let messages = event
                    .payload
                    .records
                    .into_iter()
                    .map(|r| Incoming {
                        receive_count: r
                            .attributes
                            .get("ApproximateReceiveCount")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(1),
                        sent_at_ms: r.attributes.get("SentTimestamp").and_then(|t| t.parse().ok()),
                        id: r.message_id.unwrap_or_default(),
                        body: r.body.unwrap_or_default(),
                        receipt_handle: r.receipt_handle.unwrap_or_default(),
                    })
                    .collect();
                let failed = crate::usecases::send::consume(&app, consumer, messages, deadline).await;
                let mut response = SqsBatchResponse::default();
                failed.into_iter().for_each(|id| response.add_failure(id));
                Ok::<_, Error>(response)
            }
        }))
        .await
    })
}

/// Runs the Lambda runtime loop of a function invoked with a JSON payload (the scheduled
/// start, invoked by EventBridge Scheduler): `handler` gets the payload as it came and answers
/// with what it did; an error makes Lambda retry the (asynchronous) invocation.
fn serve_event<F, Fut, T, E>(handler: F) -> Result<(), Error>
where
    F: Fn(Arc<App>, Value) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Serialize,
    E: std::fmt::Display,
{
    run_with_app(|app| async move {
        let handler = &handler;
        lambda_http::lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
            let app = app.clone();
            async move {
                match handler(app, event.payload).await {
                    Ok(done) => Ok(serde_json::to_value(done)?),
                    Err(e) => Err(Error::from(e.to_string())),
                }
            }
        }))
        .await
    })
}

/// Answers one API Gateway request with `routes`: a route that needs a key is refused (401 or
/// 503 in the envelope) unless the authorizer's verdict in the request context accepts it;
/// then the dispatcher.
pub async fn answer(app: Arc<App>, routes: &[&'static api::Route], req: Request) -> Response<Body> {
    let verdict = authorizer_verdict(&req);
    let req = from_lambda(req);
    let needs_key = api::find(routes, req.method(), req.uri().path()).is_ok_and(|(r, _)| !r.public);
    if needs_key && let Err(refused) = crate::http::auth::verdict(verdict.as_ref()) {
        return to_lambda(api::respond(Err(refused)));
    }
    to_lambda(api::dispatch(app, routes, req).await)
}

/// The API-key authorizer's verdict on this request (`requestContext.authorizer.lambda`).
fn authorizer_verdict(req: &Request) -> Option<std::collections::HashMap<String, Value>> {
    use lambda_http::RequestExt;
    match req.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(ctx) => ctx.authorizer.as_ref().map(|a| a.fields.clone()),
        _ => None,
    }
}

fn from_lambda(req: Request) -> ::http::Request<Bytes> {
    let (parts, body) = req.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    ::http::Request::from_parts(parts, bytes)
}

fn to_lambda(res: ::http::Response<String>) -> Response<Body> {
    res.map(Body::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_name_names_a_function_and_no_other_name_does() {
        for name in function_names() {
            assert!(Function::named(name).is_some(), "{name}");
        }
        assert_eq!(Function::named("create-campaign"), Some(Function::Route("create-campaign")));
        assert_eq!(Function::named("sender"), Some(Function::Sender));
        assert_eq!(Function::named("bootstrap"), None);
        // A route's name is never also another function's.
        assert!(OTHER_FUNCTIONS.iter().all(|(n, _)| !api::ROUTES.iter().any(|r| r.name == *n)));
    }
}
