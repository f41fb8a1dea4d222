//! The one HTTP stack every call of the function goes through (the AWS SDK's clients, S3, the
//! WhatsApp Cloud API): hyper over rustls with `ring`, HTTP/1.1, verified against the system's
//! root certificates (read once); plain `http://` is allowed too (the local stand-ins).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
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
    match tls() {
        Ok(config) => {
            let https =
                HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().wrap_connector(tcp);
            Ok(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(idle).build(https))
        }
        Err(e) => {
            tracing::error!(error = %e, "no root certificates for HTTPS");
            Err(format!("no root certificates to verify TLS with: {e}"))
        }
    }
}

/// TLS with `ring` and the system's root certificates, read once per process (some 150 files;
/// every client shares them).
fn tls() -> Result<rustls::ClientConfig, String> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    let config = TLS.get_or_init(|| {
        let provider = rustls::crypto::ring::default_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.into());
        let builder = builder.with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
        Ok(builder.with_native_roots().map_err(|e| e.to_string())?.with_no_client_auth())
    });
    config.clone()
}
