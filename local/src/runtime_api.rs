//! A stand-in for the Lambda Runtime API (never deployed, not tests): the few endpoints a
//! function's runtime loop calls, on a free loopback port, handing out one invocation and
//! reporting when each call arrived. The cold-start benchmark starts one per process it runs.
//!
//! The protocol is the one `lambda_runtime` speaks: `GET /2018-06-01/runtime/invocation/next`
//! is answered with the event and the `Lambda-Runtime-*` headers; the function answers with
//! `POST …/invocation/{id}/response` (or `…/error`); a failed start is `POST …/init/error`.
//! As in Lambda, a `next` with nothing to hand out is held open: here until the stand-in stops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::{mpsc, watch};

/// How long the function has for the invocation (`Lambda-Runtime-Deadline-Ms`), as the API
/// functions are configured in `template.yaml`.
const DEADLINE: Duration = Duration::from_secs(29);

/// The one invocation a stand-in hands out.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub function_arn: String,
    pub event: Bytes,
}

impl Invocation {
    /// An invocation of the function `name` with `event`, under a new request id.
    pub fn new(name: &str, event: Bytes) -> Self {
        let function_arn = format!("arn:aws:lambda:us-east-1:{}:function:{name}", crate::LOCAL_ACCOUNT);
        Invocation { request_id: uuid::Uuid::new_v4().to_string(), function_arn, event }
    }
}

/// Whether the function answered with a result or reported an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Response,
    Error,
}

/// A call of the function's runtime loop, with the time it arrived.
#[derive(Debug)]
pub enum Call {
    /// The invocation was handed out (the first `next`).
    HandedOut { at: Instant },
    /// The function's answer to the invocation `request_id`.
    Answered { at: Instant, request_id: String, outcome: Outcome, body: Bytes },
    /// The function could not start (`init/error`).
    InitError { at: Instant, body: Bytes },
}

struct Shared {
    pending: Mutex<Option<Invocation>>,
    calls: mpsc::UnboundedSender<Call>,
    /// Closed when the stand-in stops: held `next` calls return then.
    stopped: watch::Receiver<()>,
}

/// A running stand-in; it stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    server: tokio::task::JoinHandle<()>,
    _stop: watch::Sender<()>,
}

impl RuntimeApi {
    /// Starts a stand-in on a free loopback port that hands out `invocation` once.
    pub async fn start(invocation: Invocation) -> std::io::Result<Self> {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(());
        let shared = Arc::new(Shared { pending: Mutex::new(Some(invocation)), calls: calls_tx, stopped });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(RuntimeApi { addr, calls, server, _stop: stop })
    }

    /// What `AWS_LAMBDA_RUNTIME_API` is set to: `host:port`, no scheme.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The next call of the function's runtime loop (`None` once the stand-in stopped).
    pub async fn next_call(&mut self) -> Option<Call> {
        self.calls.recv().await
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Hands out the pending invocation, or holds the call until the stand-in stops.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let pending = shared.pending.lock().ok().and_then(|mut p| p.take());
    let Some(invocation) = pending else {
        let mut stopped = shared.stopped.clone();
        let _ = stopped.changed().await;
        return StatusCode::GONE.into_response();
    };
    let headers = invocation_headers(&invocation);
    let _ = shared.calls.send(Call::HandedOut { at: Instant::now() });
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn invocation_headers(invocation: &Invocation) -> HeaderMap {
    let deadline = chrono::Utc::now().timestamp_millis() + DEADLINE.as_millis() as i64;
    let trace =
        format!("Root=1-{:08x}-{}", chrono::Utc::now().timestamp(), &invocation.request_id.replace('-', "")[..24]);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/json".into());
    set("lambda-runtime-aws-request-id", invocation.request_id.clone());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set("lambda-runtime-invoked-function-arn", invocation.function_arn.clone());
    set("lambda-runtime-trace-id", format!("{trace};Sampled=0"));
    headers
}

async fn response(state: State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    answered(state, id, Outcome::Response, body)
}

async fn error(state: State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    answered(state, id, Outcome::Error, body)
}

/// Records an answer; as Lambda does, 202 to the function.
fn answered(State(shared): State<Arc<Shared>>, request_id: String, outcome: Outcome, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call::Answered { at: Instant::now(), request_id, outcome, body });
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.calls.send(Call::InitError { at: Instant::now(), body });
    StatusCode::ACCEPTED
}
