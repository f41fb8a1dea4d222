//! The fake's HTTP side: the router with the send endpoint
//! (`POST /{version}/{phone_number_id}/messages`) and the control API under `/_fake/` (requests,
//! faults, accounts, templates, config and reset here; the webhook routes in the `webhooks`
//! module), Meta's answers to unknown paths and wrong methods, how control bodies are read and
//! answered, and the ways to serve it all.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::errors::MetaError;
use super::faults::Injection;
use super::message::TemplateSpec;
use super::state::{Account, FakeState};
use super::webhooks;

/// Largest request body read; anything longer is answered with code 100.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The fake's routes: the send endpoint and the control API under `/_fake/`.
pub fn router(state: FakeState) -> axum::Router {
    axum::Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/_fake/requests", get(list_requests).delete(clear_requests))
        .route("/_fake/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_fake/accounts", post(add_account))
        .route("/_fake/templates", post(add_template))
        .route("/_fake/config", get(get_config).post(set_config))
        .route("/_fake/webhooks", get(webhooks::list).post(webhooks::post_payload).delete(webhooks::clear))
        .route("/_fake/opt-out", post(webhooks::opt_out))
        .route("/_fake/template-status", post(webhooks::template_status))
        .route("/_fake/inbound", post(webhooks::inbound))
        .route("/_fake/reset", post(reset))
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

/// Listens on `addr` and serves until the process ends.
pub async fn serve(state: FakeState, addr: SocketAddr) -> Result<(), crate::BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!("fake WhatsApp Cloud API listening on http://{local}");
    axum::serve(listener, router(state)).await?;
    Ok(())
}

/// Serves on an ephemeral port of 127.0.0.1 in a background task; returns the address.
pub async fn spawn(state: FakeState) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!("fake WhatsApp Cloud API stopped: {e}");
        }
    });
    Ok(addr)
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A control API answer: `200` with `{key: value}`.
pub(super) fn answer(key: &str, value: impl Serialize) -> Response {
    json_response(StatusCode::OK, &json!({ key: value }))
}

/// Parses a control body, refusing it with code 100 and the reason when it does not fit.
pub(super) async fn control_body<T: DeserializeOwned>(body: Body) -> Result<T, MetaError> {
    let bytes =
        axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| MetaError::invalid("the body is too large"))?;
    serde_json::from_slice(&bytes).map_err(invalid_control_body)
}

fn invalid_control_body(e: serde_json::Error) -> MetaError {
    MetaError::invalid(format!("invalid control body: {e}"))
}

async fn send(
    State(state): State<FakeState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let Ok(Path((version, phone_number_id))) = path else {
        return unknown_path(request).await.into_response();
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ());
    let outcome = state.handle_send(version, phone_number_id, &parts.headers, body);
    // Outside the lock, so each request waits on its own and concurrent sends are answered
    // concurrently.
    if !outcome.delay.is_zero() {
        tokio::time::sleep(outcome.delay).await;
    }
    outcome.reply.into_response()
}

async fn unknown_path(request: Request) -> MetaError {
    MetaError {
        status: StatusCode::NOT_FOUND,
        code: 2500,
        message: "Unknown path components".into(),
        details: format!("unknown path {}", request.uri().path()),
    }
}

async fn wrong_method(request: Request) -> MetaError {
    let method = request.method();
    MetaError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: 100,
        message: format!("Unsupported {} request.", method.as_str().to_lowercase()).into(),
        details: format!("{method} is not supported on {}", request.uri().path()),
    }
}

async fn list_requests(State(state): State<FakeState>) -> Response {
    answer("requests", state.requests())
}

async fn clear_requests(State(state): State<FakeState>) -> Response {
    answer("cleared", state.clear())
}

async fn list_faults(State(state): State<FakeState>) -> Response {
    answer("faults", state.faults())
}

async fn add_fault(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let body: Value = control_body(body).await?;
    // `code` defaults to 0 only for an answer: an error rule that forgot it is refused.
    let code_given = body.get("code").is_some();
    let fault: Injection = serde_json::from_value(body).map_err(invalid_control_body)?;
    fault.check(code_given)?;
    state.inject(fault.clone());
    Ok(answer("fault", fault))
}

async fn clear_faults(State(state): State<FakeState>) -> Response {
    answer("cleared", state.clear_faults())
}

async fn add_account(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let account: Account = control_body(body).await?;
    if account.phone_number_id.is_empty() || account.access_token.is_empty() {
        return Err(MetaError::invalid("phone_number_id and access_token must not be empty"));
    }
    state.register_account(account.phone_number_id.clone(), account.access_token.clone());
    Ok(answer("account", account))
}

async fn add_template(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let template: TemplateSpec = control_body(body).await?;
    if template.name.is_empty() || template.language.is_empty() {
        return Err(MetaError::invalid("name and language must not be empty"));
    }
    state.register_template(template.clone());
    Ok(answer("template", template))
}

async fn get_config(State(state): State<FakeState>) -> Response {
    answer("config", state.config())
}

/// Only the fields given change.
async fn set_config(State(state): State<FakeState>, body: Body) -> Result<Response, MetaError> {
    let patch: Value = control_body(body).await?;
    let config = state.config().patched(patch).map_err(|e| MetaError::invalid(format!("invalid config: {e}")))?;
    state.set_config(config.clone());
    Ok(answer("config", config))
}

async fn reset(State(state): State<FakeState>) -> Response {
    state.reset();
    answer("reset", true)
}
