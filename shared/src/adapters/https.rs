//! The one HTTP client every call of the function goes through (the AWS SDK's clients, S3, the
//! WhatsApp Cloud API):
//! hyper over rustls with `ring`, verified against the system's root certificates; plain
//! `http://` is allowed too (the local stand-ins).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The client, with request bodies of type `B` (by default whole ones), or why none could be
/// built (no root certificates): callers answer every request with that reason instead of
/// panicking.
pub type HttpsClient<B = Full<Bytes>> = Result<Client<HttpsConnector<HttpConnector>, B>, String>;

/// A client whose connections open within `connect_timeout`, keeping up to `idle` of them
/// open per host between requests.
pub fn client<B>(connect_timeout: Duration, idle: usize) -> HttpsClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let provider = rustls::crypto::ring::default_provider();
    match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider) {
        Ok(builder) => {
            let https = builder.https_or_http().enable_http1().wrap_connector(tcp);
            Ok(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle).build(https))
        }
        Err(e) => {
            tracing::error!(error = %e, "no root certificates for HTTPS");
            Err(format!("no root certificates to verify TLS with: {e}"))
        }
    }
}
