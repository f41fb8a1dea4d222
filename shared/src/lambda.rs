//! What every REST function's `main` calls: read the configuration, build the clients once,
//! serve one route of [`crate::api::ROUTES`].

use bytes::Bytes;
use lambda_http::{Body, Request, Response, service_fn};

use crate::api::{self, App};
use crate::config::{Config, aws_config, init_tracing};
use crate::store::Db;

pub type Error = lambda_http::Error;

/// Builds the application from the environment (used by the Lambda binaries and the local stack).
pub async fn app_from_env() -> std::sync::Arc<App> {
    let config = Config::from_env();
    let sdk = aws_config().await;
    let db = Db::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name.clone());
    App::new(db, config)
}

/// Runs the Lambda runtime loop for the route named `name` (the function's binary name).
pub fn serve_route(name: &str) -> Result<(), Error> {
    let route = api::route(name).ok_or_else(|| format!("no route named {name}"))?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        init_tracing();
        let app = app_from_env().await;
        let routes = [route];
        lambda_http::run(service_fn(|req: Request| {
            let app = app.clone();
            async move { Ok::<_, Error>(to_lambda(api::dispatch(app, &routes, from_lambda(req)).await)) }
        }))
        .await
    })
}

fn from_lambda(req: Request) -> http::Request<Bytes> {
    let (parts, body) = req.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    http::Request::from_parts(parts, bytes)
}

fn to_lambda(res: http::Response<String>) -> Response<Body> {
    res.map(Body::Text)
}
