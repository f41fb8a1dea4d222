//! The AWS SDK's configuration, read from the environment a Lambda function is given.
//!
//! A function needs what Lambda puts in its environment and nothing else: the region
//! (`AWS_REGION`) and the execution role's credentials (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). Locally the same variables hold the
//! emulator's dummy keys, and `AWS_ENDPOINT_URL` (or one per service,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS`, …) points the clients at it.
//! `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` set the retries, as the SDK documents them.
//!
//! Building the configuration here, rather than with the SDK's general loader, leaves out
//! what a function never uses (profile files, SSO, STS role assumption, the instance metadata
//! service), and gives the clients the function's own HTTP client (HTTP/1.1, rustls with
//! `ring`) instead of the SDK's: the deployed binary is smaller and starts sooner, and the
//! build compiles less.

use std::env;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

pub use aws_types::SdkConfig;

/// The region when the environment names none (Lambda always does).
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long opening a connection to an AWS endpoint may take (the SDK's own default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The configuration every client is built from, endpoints included as the environment
/// gives them.
pub fn sdk_config() -> SdkConfig {
    let builder = builder();
    let builder = match var("AWS_ENDPOINT_URL") {
        Some(url) => builder.endpoint_url(url),
        None => builder,
    };
    builder.service_config(EnvEndpoints).build()
}

/// The configuration with every service at `endpoint`, whatever the environment says (a test
/// stack or a benchmark talking to one emulator, or through a proxy that counts requests).
pub fn sdk_config_at(endpoint: &str) -> SdkConfig {
    builder().endpoint_url(endpoint).build()
}

fn builder() -> aws_types::sdk_config::Builder {
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| DEFAULT_REGION.into());
    let http = SharedHttpClient::new(SdkHttp(super::https::client(CONNECT_TIMEOUT, 64)));
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .http_client(http)
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new())
        .retry_config(retry_config())
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
    if let Some(credentials) = credentials() {
        builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
    } else {
        tracing::warn!("no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
    }
    builder
}

/// The SDK clients' HTTP client: the function's own HTTPS client (HTTP/1.1, rustls with
/// `ring`), so the binary carries one HTTP stack, without HTTP/2, instead of the SDK's.
#[derive(Debug)]
struct SdkHttp(super::https::HttpsClient<SdkBody>);

/// One operation's connector: the shared client and that operation's read timeout.
#[derive(Debug)]
struct SdkConnector {
    http: super::https::HttpsClient<SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpClient for SdkHttp {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(SdkConnector { http: self.0.clone(), read_timeout: settings.read_timeout() })
    }
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = match &self.http {
            Ok(http) => http.clone(),
            Err(why) => return HttpConnectorFuture::ready(Err(ConnectorError::other(why.clone().into(), None))),
        };
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answer = http.request(request);
            let answer = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, answer).await {
                    Ok(answer) => answer,
                    Err(e) => return Err(ConnectorError::timeout(e.into())),
                },
                None => answer.await,
            };
            // A connection that failed or closed is transient: the SDK's retries take it.
            let answer = answer.map_err(|e| ConnectorError::io(e.into()))?;
            let (parts, body) = answer.into_parts();
            let answer = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The SDK's standard retries (3 attempts), or as many as `AWS_MAX_ATTEMPTS` says; with
/// `AWS_RETRY_MODE=adaptive`, its client-side rate limiting too.
fn retry_config() -> RetryConfig {
    let config = match var("AWS_RETRY_MODE").map(|m| m.to_lowercase()).as_deref() {
        Some("adaptive") => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    };
    match var("AWS_MAX_ATTEMPTS").and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0) {
        Some(attempts) => config.with_max_attempts(attempts),
        None => config,
    }
}

/// The credentials Lambda gives the function's role (or the emulator's dummy keys).
fn credentials() -> Option<Credentials> {
    let key = var("AWS_ACCESS_KEY_ID")?;
    let secret = var("AWS_SECRET_ACCESS_KEY")?;
    Some(Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "environment"))
}

/// The endpoint `sdk` gives the service `service_id` ("S3"): its own variable
/// (`AWS_ENDPOINT_URL_S3`) when the configuration reads the environment, else the one for
/// every service; `None` for AWS's own addresses. For the adapters that sign their own
/// requests instead of using an SDK client.
pub fn endpoint(sdk: &SdkConfig, service_id: &str) -> Option<String> {
    let own = sdk.service_config().and_then(|_| var(&service_variable("AWS_ENDPOINT_URL", service_id)));
    own.or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// One endpoint per service from the environment: `AWS_ENDPOINT_URL_<SERVICE>` (the service's
/// id in capitals, spaces as underscores: `AWS_ENDPOINT_URL_DYNAMODB`), else `AWS_ENDPOINT_URL`.
#[derive(Debug)]
struct EnvEndpoints;

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        var(&service_variable(key.env(), key.service_id())).or_else(|| var(key.env()))
    }
}

fn service_variable(variable: &str, service_id: &str) -> String {
    format!("{variable}_{}", service_id.to_uppercase().replace(' ', "_"))
}

/// A variable's value, unless it is unset or empty.
fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_has_its_own_variable() {
        assert_eq!(service_variable("AWS_ENDPOINT_URL", "DynamoDB"), "AWS_ENDPOINT_URL_DYNAMODB");
        assert_eq!(service_variable("AWS_ENDPOINT_URL", "Secrets Manager"), "AWS_ENDPOINT_URL_SECRETS_MANAGER");
    }

    #[test]
    fn an_endpoint_given_wins_over_the_environment() {
        let config = sdk_config_at("http://127.0.0.1:1");
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:1"));
        assert!(config.service_config().is_none());
        assert!(config.http_client().is_some());
        assert!(config.region().is_some());
        assert_eq!(endpoint(&config, "S3").as_deref(), Some("http://127.0.0.1:1"));
    }
}
