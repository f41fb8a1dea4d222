//! The HTTP API: one route table, one dispatcher, one handler per route.
//!
//! A route's function serves its entries of [`ROUTES`] ([`crate::lambda::serve`]); the local
//! stack serves all of them on one port. Both go through [`dispatch`], so they answer the same.

mod accounts;
mod actions;
pub mod auth;
mod campaigns;
mod exports;
pub mod idempotency;
mod keys;
mod recipients;
mod request;
mod templates;
mod uploads;
pub mod webhook;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, StatusCode};
use serde_json::{Value, json};

pub use request::{ApiRequest, Pagination, parse_json};

use crate::adapters::store::{Position, Start};
use crate::app::App;
use crate::error::{AppError, AppResult, ErrorKind};

/// A successful answer: the status code and the `data` of the envelope, or plain text (the
/// webhook's verification challenge).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub data: Value,
    pub text: Option<String>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply { status: StatusCode::OK, data, text: None }
    }
    pub fn accepted(data: Value) -> Self {
        Reply { status: StatusCode::ACCEPTED, data, text: None }
    }

    pub fn created(data: Value) -> Self {
        Reply { status: StatusCode::CREATED, data, text: None }
    }
    pub fn text(text: String) -> Self {
        Reply { status: StatusCode::OK, data: Value::Null, text: Some(text) }
    }
    /// A page of a listing in the spec's shape.
    pub fn page(items: Vec<Value>, total: u64, p: Pagination) -> Self {
        Reply::ok(json!({ "items": items, "total": total, "page": p.page, "limit": p.limit }))
    }

    /// A page of a listing that also pages by cursor: `next_cursor` continues it (null after
    /// the last page); `page` is null when the page was asked by cursor.
    pub fn listed(items: Vec<Value>, total: u64, p: Pagination, start: &Start, next: Option<Position>) -> Self {
        let page = matches!(start, Start::Page(_)).then_some(p.page);
        let next = next.map(|n| n.encode());
        Reply::ok(json!({ "items": items, "total": total, "page": page, "limit": p.limit, "next_cursor": next }))
    }
}

pub type Handler = fn(Arc<App>, ApiRequest) -> BoxFuture<'static, AppResult<Reply>>;

pub struct Route {
    /// The function that serves this route (its `Handler` in template.yaml).
    pub name: &'static str,
    pub method: Method,
    /// API Gateway's path syntax: `/api/campaigns/{id}`.
    pub path: &'static str,
    pub handler: Handler,
    /// Open without an API key (the webhook, which Meta authenticates by signature). Every
    /// other route needs a key, checked before it is dispatched ([`crate::usecases::keys::check`]).
    pub public: bool,
    /// Honours an `Idempotency-Key` header ([`idempotency`]).
    pub idempotent: bool,
}

macro_rules! route {
    ($name:literal, $method:ident, $path:literal, $handler:path) => {
        route!(@ $name, $method, $path, $handler, false, false)
    };
    ($name:literal, $method:ident, $path:literal, $handler:path, public) => {
        route!(@ $name, $method, $path, $handler, true, false)
    };
    ($name:literal, $method:ident, $path:literal, $handler:path, idempotent) => {
        route!(@ $name, $method, $path, $handler, false, true)
    };
    (@ $name:literal, $method:ident, $path:literal, $handler:path, $public:literal, $idempotent:literal) => {
        Route {
            name: $name,
            method: Method::$method,
            path: $path,
            handler: |app, req| Box::pin($handler(app, req)),
            public: $public,
            idempotent: $idempotent,
        }
    };
}

pub static ROUTES: &[Route] = &[
    route!("list-accounts", GET, "/api/accounts", accounts::list),
    route!("create-account", POST, "/api/accounts", accounts::create),
    route!("get-account", GET, "/api/accounts/{id}", accounts::get),
    route!("update-account", PUT, "/api/accounts/{id}", accounts::update),
    route!("delete-account", DELETE, "/api/accounts/{id}", accounts::delete),
    route!("list-templates", GET, "/api/templates", templates::list),
    route!("create-template", POST, "/api/templates", templates::create),
    route!("get-template", GET, "/api/templates/{id}", templates::get),
    route!("delete-template", DELETE, "/api/templates/{id}", templates::delete),
    route!("list-campaigns", GET, "/api/campaigns", campaigns::list),
    route!("create-campaign", POST, "/api/campaigns", campaigns::create, idempotent),
    route!("get-campaign", GET, "/api/campaigns/{id}", campaigns::get),
    route!("update-campaign", PUT, "/api/campaigns/{id}", campaigns::update),
    route!("delete-campaign", DELETE, "/api/campaigns/{id}", campaigns::delete),
    route!("start-campaign", POST, "/api/campaigns/{id}/start", actions::start, idempotent),
    route!("pause-campaign", POST, "/api/campaigns/{id}/pause", actions::pause),
    route!("cancel-campaign", POST, "/api/campaigns/{id}/cancel", actions::cancel),
    route!("retry-failed", POST, "/api/campaigns/{id}/retry-failed", actions::retry_failed),
    route!("test-send", POST, "/api/campaigns/{id}/test", actions::test, idempotent),
    route!("import-recipients", POST, "/api/campaigns/{id}/recipients/import", recipients::import, idempotent),
    route!("list-recipients", GET, "/api/campaigns/{id}/recipients", recipients::list),
    route!("create-export", POST, "/api/campaigns/{id}/exports", exports::create),
    route!("get-export", GET, "/api/campaigns/{id}/exports/{export_id}", exports::get),
    route!("create-upload", POST, "/api/campaigns/{id}/recipients/uploads", uploads::create),
    route!("get-upload", GET, "/api/campaigns/{id}/recipients/uploads/{upload_id}", uploads::get),
    route!("list-api-keys", GET, "/api/keys", keys::list),
    route!("create-api-key", POST, "/api/keys", keys::create),
    route!("revoke-api-key", DELETE, "/api/keys/{id}", keys::revoke),
    route!("whatsapp-webhook", GET, "/webhooks/whatsapp", webhook::verify, public),
    route!("whatsapp-webhook", POST, "/webhooks/whatsapp", webhook::receive, public),
];

/// The routes one function serves (the webhook function serves two methods of its path).
pub fn routes(name: &str) -> Vec<&'static Route> {
    ROUTES.iter().filter(|r| r.name == name).collect()
}

/// The largest request body a Lambda function can receive (its 6 MB invocation payload limit).
/// The local stack applies the same limit so that it answers as AWS would.
pub use crate::domain::limits::MAX_BODY_BYTES;

/// Matches `path` against a route pattern and returns the `{name}` captures.
fn match_path(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut pat = pattern.trim_end_matches('/').split('/');
    let mut got = path.trim_end_matches('/').split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(g)) if p.starts_with('{') && p.ends_with('}') && !g.is_empty() => {
                params.push((p[1..p.len() - 1].to_string(), g.to_string()));
            }
            (Some(p), Some(g)) if p == g => {}
            _ => return None,
        }
    }
}

/// Finds the route for a method and path: 404 when no route has the path, 405 when none of
/// those that have it takes the method.
pub fn find<'r>(routes: &[&'r Route], method: &Method, path: &str) -> AppResult<(&'r Route, Vec<(String, String)>)> {
    for r in routes {
        if let Some(params) = match_path(r.path, path)
            && r.method == method
        {
            return Ok((r, params));
        }
    }
    match allowed(routes, path) {
        None => Err(AppError::not_found(format!("no route for {method} {path}"))),
        Some(allow) => Err(AppError::new(
            ErrorKind::MethodNotAllowed,
            format!("method {method} is not allowed on {path}; use {allow}"),
        )),
    }
}

/// The methods the routes take on `path` (`GET, POST`), for a 405's message and `Allow` header.
fn allowed(routes: &[&Route], path: &str) -> Option<String> {
    let methods: Vec<&str> =
        routes.iter().filter(|r| match_path(r.path, path).is_some()).map(|r| r.method.as_str()).collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

/// Answers one request with the given routes (all of them locally, one in a Lambda). The API
/// key has been checked before (by the authorizer in AWS, by the local server locally).
pub async fn dispatch(app: Arc<App>, routes: &[&'static Route], req: http::Request<Bytes>) -> http::Response<String> {
    let (parts, body) = req.into_parts();
    let result = match find(routes, &parts.method, parts.uri.path()) {
        Err(e) => Err(e),
        Ok(_) if body.len() > MAX_BODY_BYTES => Err(too_large(body.len())),
        Ok((route, params)) => {
            let request = ApiRequest::new(params, parts.uri.query(), parts.headers, body);
            match route.idempotent.then(|| idempotency::key_of(&request)).transpose().map(Option::flatten) {
                Ok(Some(key)) => return idempotency::once(app, route, parts.uri.path(), key, request).await,
                Ok(None) => (route.handler)(app, request).await,
                Err(e) => Err(e),
            }
        }
    };
    with_allow(respond(result), routes, parts.uri.path())
}

/// Answers what the HTTP API routes to none of the functions (its `$default` route): 404 for
/// an unknown path, 405 for a known path with another method, in the envelope, as the local
/// stack answers them. A request that a route would take here (such as a path with a trailing
/// slash, which the HTTP API does not match to the route) is not served from this route, which
/// has no authorizer: 404 naming the route to use.
pub fn unrouted(method: &Method, path: &str) -> http::Response<String> {
    let all: Vec<&Route> = ROUTES.iter().collect();
    let result = match find(&all, method, path) {
        Err(e) => Err(e),
        Ok((route, _)) => Err(AppError::not_found(format!(
            "no route for {method} {path}; the route is {} {}",
            route.method, route.path
        ))),
    };
    with_allow(respond(result), &all, path)
}

/// A 405 lists the methods the path takes in its `Allow` header.
fn with_allow(mut response: http::Response<String>, routes: &[&Route], path: &str) -> http::Response<String> {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allowed(routes, path)
        && let Ok(value) = http::HeaderValue::from_str(&allow)
    {
        response.headers_mut().insert(http::header::ALLOW, value);
    }
    response
}

pub fn too_large(len: usize) -> AppError {
    AppError::too_large(format!(
        "the request body has {len} bytes; the limit is {MAX_BODY_BYTES} bytes (6 MB, the Lambda payload limit). \
         Split the file and import it in parts of at most about 100,000 rows each"
    ))
}

/// The status code that answers an error of this kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Turns a handler's outcome into the spec's envelope.
pub fn respond(result: AppResult<Reply>) -> http::Response<String> {
    let (status, body) = match result {
        Ok(Reply { status, text: Some(text), .. }) => {
            return http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(text)
                .unwrap_or_else(|_| http::Response::new(String::new()));
        }
        Ok(r) => (r.status, json!({ "status": "success", "data": r.data })),
        Err(e) => (status_of(e.kind), json!({ "status": "error", "message": e.message, "data": null })),
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .unwrap_or_else(|_| http::Response::new(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(res: &http::Response<String>) -> Value {
        serde_json::from_str(res.body()).unwrap()
    }

    #[test]
    fn what_no_route_takes_is_answered_in_the_envelope() {
        let unknown = unrouted(&Method::GET, "/favicon.ico");
        assert_eq!(unknown.status(), 404);
        assert_eq!(body(&unknown)["message"], "no route for GET /favicon.ico");
        assert!(unknown.headers().get("allow").is_none());

        let other_method = unrouted(&Method::PATCH, "/api/campaigns/0b6f4c6e-0000-4000-8000-000000000000");
        assert_eq!(other_method.status(), 405);
        assert_eq!(other_method.headers()["allow"], "GET, PUT, DELETE");
        assert_eq!(body(&other_method)["status"], "error");
        assert_eq!(unrouted(&Method::DELETE, "/webhooks/whatsapp").headers()["allow"], "GET, POST");

        // Never served without the authorizer: a path a route would take is refused.
        let slash = unrouted(&Method::GET, "/api/campaigns/");
        assert_eq!(slash.status(), 404);
        assert_eq!(body(&slash)["message"], "no route for GET /api/campaigns/; the route is GET /api/campaigns");
    }

    #[test]
    fn paths_match_with_captures() {
        assert_eq!(match_path("/api/campaigns", "/api/campaigns/"), Some(vec![]));
        assert_eq!(
            match_path("/api/campaigns/{id}/recipients", "/api/campaigns/abc/recipients"),
            Some(vec![("id".to_string(), "abc".to_string())])
        );
        assert_eq!(match_path("/api/campaigns/{id}", "/api/campaigns/abc/recipients"), None);
        assert_eq!(match_path("/api/campaigns/{id}", "/api/campaigns/"), None);
    }

    #[test]
    fn a_function_serves_one_path() {
        for (i, r) in ROUTES.iter().enumerate() {
            // The webhook's function serves two methods of its path; no two routes are alike.
            assert!(
                ROUTES[..i]
                    .iter()
                    .all(|o| (o.name != r.name || o.path == r.path) && (o.path, &o.method) != (r.path, &r.method))
            );
        }
    }

    #[test]
    fn every_api_route_needs_a_key_and_only_the_webhook_is_public() {
        for r in ROUTES {
            assert_eq!(r.public, !r.path.starts_with("/api/"), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn errors_use_the_envelope() {
        let r = respond(Err(AppError::conflict("campaign is sending")));
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let v: Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v, json!({"status":"error","message":"campaign is sending","data":null}));
    }
}
