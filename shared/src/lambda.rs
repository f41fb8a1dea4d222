//! What every function's `main` calls: read the configuration, build the clients once, then
//! serve one route of [`crate::http::ROUTES`], consume one queue, or take JSON events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};
use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::app::config::init_tracing;
use crate::http as api;
use crate::usecases::send::{self, Consumer, Incoming};

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

/// Runs the Lambda runtime loop for the route named `name` (the function's binary name).
pub fn serve_route(name: &str) -> Result<(), Error> {
    let routes = api::routes(name);
    if routes.is_empty() {
        return Err(format!("no route named {name}").into());
    }
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
pub fn serve_unrouted() -> Result<(), Error> {
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
pub fn serve_queue(consumer: Consumer) -> Result<(), Error> {
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
                        id: r.message_id.unwrap_or_default(),
                        body: r.body.unwrap_or_default(),
                        receipt_handle: r.receipt_handle.unwrap_or_default(),
                    })
                    .collect();
                let failed = send::consume(&app, consumer, messages, deadline).await;
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
pub fn serve_event<F, Fut, T, E>(handler: F) -> Result<(), Error>
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
