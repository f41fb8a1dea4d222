//! AWS requests made by hand: signed with Signature Version 4 (`aws-sigv4`, the signer the SDK
//! itself uses) and sent over the function's HTTPS client. For the services whose few calls do
//! not justify an SDK client in the binary (S3's eight, Secrets Manager's four; see
//! docs/architecture.md); DynamoDB, SQS, EventBridge and EventBridge Scheduler use the SDK.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::adapters::https::HttpsClient;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// How long a service may take to start answering (a `CompleteMultipartUpload` of many parts
/// can take a while), and at most between two pieces of an answer being read.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of a request that met a connection error, a timeout or a 500/503 (as the SDK's
/// standard retries).
const ATTEMPTS: u32 = 3;

/// How a service wants its requests signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// S3: the path as sent (encoded once, never normalised), the payload's hash in
    /// `x-amz-content-sha256`.
    S3,
    /// Any other service, by its signing name ("secretsmanager").
    Other(&'static str),
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Other(name) => name,
        }
    }
}

/// One request, before it is signed.
pub struct Call<'a> {
    /// What it is, for errors ("GetObject").
    pub operation: &'static str,
    pub method: Method,
    /// The whole URL, its path and query already percent-encoded ([`encode`]).
    pub url: &'a str,
    pub headers: &'a [(&'static str, &'a str)],
    pub body: Bytes,
}

/// The region, credentials and HTTP client that signed requests are made with.
#[derive(Clone, Debug)]
pub struct Signer {
    http: HttpsClient,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

impl Signer {
    pub fn new(sdk: &crate::adapters::aws::SdkConfig) -> Self {
        Signer {
            http: crate::adapters::https::client(CONNECT_TIMEOUT, 16),
            region: sdk.region().map_or(crate::adapters::aws::DEFAULT_REGION, |r| r.as_ref()).to_string(),
            credentials: sdk.credentials_provider(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let provider = self.credentials.as_ref().ok_or("no AWS credentials")?;
        provider.provide_credentials().await.map_err(|e| format!("AWS credentials: {e}"))
    }

    /// `url` with a signature in its query string that holds for `valid` (only the host is
    /// signed, so any HTTP client can use it as it is).
    pub async fn presign(
        &self,
        service: Service,
        method: &Method,
        url: &str,
        valid: Duration,
    ) -> Result<String, String> {
        let credentials = self.credentials().await?;
        let body = SignableBody::UnsignedPayload;
        let request =
            signed(service, method, url, &[], body, &credentials, &self.region, SystemTime::now(), Some(valid))?;
        Ok(request.uri().to_string())
    }

    /// Signs and sends `call`, again after a connection error, a timeout or a 500/503 (up to
    /// [`ATTEMPTS`] in all, 100 ms then 200 ms apart); answers whatever status came otherwise.
    pub async fn send(&self, service: Service, call: &Call<'_>) -> Result<Response<Incoming>, String> {
        let http = self.http.as_ref().map_err(|why| why.clone())?;
        let credentials = self.credentials().await?;
        let mut attempt = 1;
        loop {
            let body = SignableBody::Bytes(&call.body);
            let time = SystemTime::now();
            let request =
                signed(service, &call.method, call.url, call.headers, body, &credentials, &self.region, time, None)?;
            let (parts, ()) = request.into_parts();
            let request = Request::from_parts(parts, Full::new(call.body.clone()));
            let why = match tokio::time::timeout(ANSWER_TIMEOUT, http.request(request)).await {
                Ok(Ok(answer)) if !matches!(answer.status().as_u16(), 500 | 503) || attempt == ATTEMPTS => {
                    return Ok(answer);
                }
                Ok(Ok(answer)) => format!("HTTP {}", answer.status()),
                Ok(Err(e)) => format!("{e}"),
                Err(_) => format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            };
            if attempt == ATTEMPTS {
                return Err(format!("{}: {why}", call.operation));
            }
            tracing::warn!(operation = call.operation, attempt, error = %why, "AWS request failed; trying again");
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
            attempt += 1;
        }
    }
}

/// The whole body of an answer, as text.
pub async fn text(answer: Response<Incoming>) -> Result<String, String> {
    match tokio::time::timeout(ANSWER_TIMEOUT, answer.into_body().collect()).await {
        Ok(Ok(body)) => Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned()),
        Ok(Err(e)) => Err(format!("reading the answer: {e}")),
        Err(_) => Err("the answer stopped arriving".into()),
    }
}

/// A request to `url` with `headers`, signed for `service` in `region` at `time`: in its
/// headers, or with `presign` in its query string for that long.
#[allow(clippy::too_many_arguments)]
fn signed(
    service: Service,
    method: &Method,
    url: &str,
    headers: &[(&'static str, &str)],
    body: SignableBody<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    presign: Option<Duration>,
) -> Result<Request<()>, String> {
    let signing = |e: &dyn std::fmt::Display| format!("signing the request: {e}");
    // The signer signs the host and panics on a URL without one (an endpoint set without a
    // scheme, say): that is answered as an error instead.
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() => {}
        _ => return Err(format!("cannot sign a request to {url}: the URL has no host")),
    }
    let mut settings = SigningSettings::default();
    if service == Service::S3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    match presign {
        Some(valid) => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(valid);
        }
        None if service == Service::S3 => settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256,
        None => {}
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service.name())
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let signable =
        SignableRequest::new(method.as_str(), url, headers.iter().copied(), body).map_err(|e| signing(&e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| signing(&e))?.into_parts();
    let mut request = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).map_err(|e| signing(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request)
}

/// `text` percent-encoded as canonical requests want it: every byte but the unreserved
/// characters, and `/` too when `slash` (query values; a key's slashes separate its path).
pub fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2013-05-24T00:00:00Z, the time of S3's Signature Version 4 examples.
    fn s3_example() -> (Credentials, SystemTime) {
        let credentials =
            Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None, "test");
        (credentials, SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600))
    }

    #[test]
    fn a_signed_s3_get_matches_s3s_documented_example() {
        let (credentials, time) = s3_example();
        let url = "https://examplebucket.s3.amazonaws.com/test.txt";
        let headers = [("range", "bytes=0-9")];
        let body = SignableBody::Bytes(b"");
        let request =
            signed(Service::S3, &Method::GET, url, &headers, body, &credentials, "us-east-1", time, None).unwrap();
        assert_eq!(
            request.headers()["authorization"].to_str().unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            request.headers()["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(request.headers()["range"], "bytes=0-9");
    }

    #[test]
    fn a_presigned_s3_url_matches_s3s_documented_example() {
        let (credentials, time) = s3_example();
        let url = "https://examplebucket.s3.amazonaws.com/test.txt";
        let valid = Some(Duration::from_secs(86_400));
        let body = SignableBody::UnsignedPayload;
        let request =
            signed(Service::S3, &Method::GET, url, &[], body, &credentials, "us-east-1", time, valid).unwrap();
        let url = request.uri().to_string();
        assert!(url.starts_with("https://examplebucket.s3.amazonaws.com/test.txt?"), "{url}");
        assert!(
            url.contains("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=86400"), "{url}");
        assert!(url.contains("X-Amz-SignedHeaders=host"), "{url}");
        assert!(
            url.ends_with("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
            "{url}"
        );
        assert!(request.headers().get("authorization").is_none());
    }

    #[test]
    fn another_service_is_signed_as_the_signature_test_suite_says() {
        // The suite's `get-vanilla`: GET / of example.amazonaws.com, 2015-08-30T12:36:00Z.
        let credentials =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let url = "https://example.amazonaws.com/";
        let body = SignableBody::Bytes(b"");
        let service = Service::Other("service");
        let request = signed(service, &Method::GET, url, &[], body, &credentials, "us-east-1", time, None).unwrap();
        assert_eq!(
            request.headers()["authorization"].to_str().unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(request.headers().get("x-amz-content-sha256").is_none());
    }

    #[test]
    fn a_url_without_a_host_is_refused_not_signed() {
        let (credentials, time) = s3_example();
        let body = SignableBody::Bytes(b"");
        let e = signed(Service::S3, &Method::GET, "/bucket/key", &[], body, &credentials, "us-east-1", time, None);
        assert!(e.unwrap_err().contains("no host"));
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters_and_a_keys_slashes() {
        assert_eq!(encode("exports/a b+c.csv", false), "exports/a%20b%2Bc.csv");
        assert_eq!(encode("x/y+z=~", true), "x%2Fy%2Bz%3D~");
    }
}
