//! Every route on one port, answered by the same dispatcher a Lambda function uses, behind the
//! same API-key check the authorizer function runs in AWS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use shared::app::App;
use shared::http::{self as api, ROUTES};

fn all_routes() -> Vec<&'static api::Route> {
    ROUTES.iter().collect()
}

/// What the authorizer does in AWS, before the body is read or a handler runs: a request for
/// a route that needs a key is answered 401 unless [`shared::usecases::keys::check`] accepts its key.
/// Unknown routes and public ones (the webhook) pass, as in API Gateway.
async fn authorize(app: &App, parts: &http::request::Parts) -> Result<(), http::Response<String>> {
    match api::find(&all_routes(), &parts.method, parts.uri.path()) {
        Ok((route, _)) if !route.public => {
            shared::http::auth::check_request(app, &parts.headers).await.map(|_| ()).map_err(|e| api::respond(Err(e)))
        }
        _ => Ok(()),
    }
}

/// Answers one request as the deployed API would: key check, then the dispatcher.
pub async fn answer(app: Arc<App>, req: http::Request<Bytes>) -> http::Response<String> {
    let (parts, body) = req.into_parts();
    if let Err(refused) = authorize(&app, &parts).await {
        return refused;
    }
    api::dispatch(app, &all_routes(), http::Request::from_parts(parts, body)).await
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(refused) = authorize(&app, &parts).await {
        return refused.map(Body::from);
    }
    // Read one byte past the limit so an oversized body is told apart and answered with 413.
    let bytes = match axum::body::to_bytes(body, api::MAX_BODY_BYTES + 1).await {
        Ok(b) => b,
        Err(_) => {
            return api::respond(Err(api::too_large(api::MAX_BODY_BYTES + 1))).map(Body::from);
        }
    };
    api::dispatch(app, &all_routes(), http::Request::from_parts(parts, bytes)).await.map(Body::from)
}

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

/// Serves until the process ends.
pub async fn serve(app: Arc<App>, addr: SocketAddr) -> Result<(), crate::BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    axum::serve(listener, router(app)).await?;
    Ok(())
}

/// Serves on an ephemeral port of 127.0.0.1 in the background (tests, benchmarks); returns the
/// address.
pub async fn spawn(app: Arc<App>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(app)).await {
            tracing::error!(error = %e, "the local API stopped");
        }
    });
    Ok(addr)
}
