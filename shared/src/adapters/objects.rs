//! The S3 adapter: the bucket that takes uploaded recipient files and results exports. A
//! caller uploads with a presigned `PUT` URL (the file never passes through a function); the
//! import worker reads the object as a stream, from any byte offset (a ranged `GET`), so its
//! memory does not grow with the file; an export is written as a multipart upload and fetched
//! with a presigned `GET` URL.
//!
//! These eight calls are S3's REST API signed with Signature Version 4 (`aws-sigv4`, the
//! signer the SDK itself uses) over the function's HTTPS client, rather than the SDK's S3
//! client: that client, with its checksum tables and models of every S3 operation, was an
//! eighth of the function binary for eight calls. Requests go to the bucket's virtual-hosted
//! address (`https://<bucket>.s3.<region>.amazonaws.com/<key>`), or path-style under an
//! endpoint when one is set (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`: the emulator).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::adapters::https::HttpsClient;

#[derive(Debug, thiserror::Error)]
#[error("S3: {0}")]
pub struct ObjectError(String);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// How long S3 may take to start answering a request (a `CompleteMultipartUpload` of many
/// parts can take a while), and at most between two pieces of an object being read.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts of a request that met a connection error or S3's 500/503 (as the SDK's
/// standard retries).
const ATTEMPTS: u32 = 3;

#[derive(Clone, Debug)]
pub struct Objects {
    http: HttpsClient,
    /// Path-style base URL (an emulator), or `None` for S3's virtual-hosted addresses.
    endpoint: Option<String>,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    bucket: Option<String>,
}

/// A presigned request (an upload or a download): the URL and when it stops working.
#[derive(Debug)]
pub struct Presigned {
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// An object being read: its bytes as they arrive.
pub struct ObjectStream {
    body: Incoming,
}

impl ObjectStream {
    /// The next bytes, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, ObjectError>> {
        loop {
            let frame = match tokio::time::timeout(ANSWER_TIMEOUT, self.body.frame()).await {
                Err(_) => return Some(Err(ObjectError("the object stopped arriving".into()))),
                Ok(frame) => frame?,
            };
            match frame {
                Err(e) => return Some(Err(ObjectError(format!("reading the object: {e}")))),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

/// One request to S3, before it is signed.
struct Call<'a> {
    /// What it is, for errors ("GetObject").
    operation: &'static str,
    method: Method,
    key: &'a str,
    query: &'a [(&'a str, &'a str)],
    headers: &'a [(&'static str, &'a str)],
    body: Bytes,
}

impl Objects {
    /// The client for `sdk`'s region, credentials and S3 endpoint.
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, bucket: Option<String>) -> Self {
        Objects {
            http: crate::adapters::https::client(CONNECT_TIMEOUT, 16),
            endpoint: crate::adapters::aws::endpoint(sdk, "S3").map(|e| e.trim_end_matches('/').to_string()),
            region: sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into()),
            credentials: sdk.credentials_provider(),
            bucket,
        }
    }

    fn bucket(&self) -> Result<&str, ObjectError> {
        self.bucket.as_deref().ok_or_else(|| ObjectError("UPLOAD_BUCKET is not configured".into()))
    }

    /// The URL of `key` with `query` (names and values as given; they are percent-encoded here).
    fn url(&self, key: &str, query: &[(&str, &str)]) -> Result<String, ObjectError> {
        let bucket = self.bucket()?;
        let path = encode(key, false);
        let mut url = match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{bucket}/{path}"),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{path}", self.region),
        };
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(name, true));
            url.push('=');
            url.push_str(&encode(value, true));
        }
        Ok(url)
    }

    async fn credentials(&self) -> Result<Credentials, ObjectError> {
        let provider = self.credentials.as_ref().ok_or_else(|| ObjectError("no AWS credentials".into()))?;
        provider.provide_credentials().await.map_err(|e| ObjectError(format!("AWS credentials: {e}")))
    }

    /// A URL that lets its holder `PUT` one object at `key` for `valid` (no header is signed
    /// but the host, so any HTTP client can use it as it is).
    pub async fn presign_put(&self, key: &str, valid: Duration) -> Result<Presigned, ObjectError> {
        self.presign(Method::PUT, key, valid).await
    }

    /// A URL that lets its holder `GET` the object at `key` for `valid`.
    pub async fn presign_get(&self, key: &str, valid: Duration) -> Result<Presigned, ObjectError> {
        self.presign(Method::GET, key, valid).await
    }

    async fn presign(&self, method: Method, key: &str, valid: Duration) -> Result<Presigned, ObjectError> {
        let url = self.url(key, &[])?;
        let credentials = self.credentials().await?;
        let signed = signed(
            &method,
            &url,
            &[],
            SignableBody::UnsignedPayload,
            &credentials,
            &self.region,
            SystemTime::now(),
            Some(valid),
        )?;
        Ok(Presigned { url: signed.uri().to_string(), expires_at: chrono::Utc::now() + valid })
    }

    /// The object's size in bytes, `None` when there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        let call =
            Call { operation: "HeadObject", method: Method::HEAD, key, query: &[], headers: &[], body: Bytes::new() };
        let answer = self.send(&call).await?;
        match answer.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let length = answer.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
                Ok(Some(length.and_then(|v| v.parse().ok()).unwrap_or(0)))
            }
            _ => Err(failure(call.operation, answer).await),
        }
    }

    /// The object's bytes from `offset` on.
    pub async fn read_from(&self, key: &str, offset: u64) -> Result<ObjectStream, ObjectError> {
        let range = format!("bytes={offset}-");
        let headers = [("range", range.as_str())];
        let call = Call {
            operation: "GetObject",
            method: Method::GET,
            key,
            query: &[],
            headers: &headers,
            body: Bytes::new(),
        };
        let answer = self.send(&call).await?;
        if !answer.status().is_success() {
            return Err(failure(call.operation, answer).await);
        }
        Ok(ObjectStream { body: answer.into_body() })
    }

    /// Starts a multipart upload to `key`; returns its id.
    pub async fn start_parts(&self, key: &str, content_type: &str) -> Result<String, ObjectError> {
        let headers = [("content-type", content_type)];
        let query = [("uploads", "")];
        let call = Call {
            operation: "CreateMultipartUpload",
            method: Method::POST,
            key,
            query: &query,
            headers: &headers,
            body: Bytes::new(),
        };
        let text = self.exchange(&call).await?;
        xml_value(&text, "UploadId").ok_or_else(|| ObjectError("S3 answered no upload id".into()))
    }

    /// Uploads part `number` (from 1) of a multipart upload; returns its ETag.
    pub async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        let number = number.to_string();
        let query = [("partNumber", number.as_str()), ("uploadId", upload_id)];
        let call =
            Call { operation: "UploadPart", method: Method::PUT, key, query: &query, headers: &[], body: bytes.into() };
        let answer = self.send(&call).await?;
        if !answer.status().is_success() {
            return Err(failure(call.operation, answer).await);
        }
        let etag = answer.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok());
        etag.map(str::to_string).ok_or_else(|| ObjectError("S3 answered no ETag for the part".into()))
    }

    /// Completes a multipart upload from its parts (number and ETag, in order).
    pub async fn finish_parts(&self, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<(), ObjectError> {
        let mut body = String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        for (number, etag) in parts {
            body.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>", xml_escape(etag)));
        }
        body.push_str("</CompleteMultipartUpload>");
        let query = [("uploadId", upload_id)];
        let headers = [("content-type", "application/xml")];
        let call = Call {
            operation: "CompleteMultipartUpload",
            method: Method::POST,
            key,
            query: &query,
            headers: &headers,
            body: body.into(),
        };
        let text = self.exchange(&call).await?;
        // S3 may answer 200 and then report an error in the body.
        if text.contains("<Error>") {
            return Err(ObjectError(format!("{}: {}", call.operation, error_text(&text))));
        }
        Ok(())
    }

    /// Sends `call` and reads the whole answer, which must be a success.
    async fn exchange(&self, call: &Call<'_>) -> Result<String, ObjectError> {
        let answer = self.send(call).await?;
        if !answer.status().is_success() {
            return Err(failure(call.operation, answer).await);
        }
        let body = tokio::time::timeout(ANSWER_TIMEOUT, answer.into_body().collect()).await;
        match body {
            Ok(Ok(body)) => Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned()),
            Ok(Err(e)) => Err(ObjectError(format!("{}: reading the answer: {e}", call.operation))),
            Err(_) => Err(ObjectError(format!("{}: the answer stopped arriving", call.operation))),
        }
    }

    /// Signs and sends `call`, again after a connection error or a 500/503 (up to [`ATTEMPTS`]
    /// in all, 100 ms then 200 ms apart); answers whatever status S3 gave otherwise.
    async fn send(&self, call: &Call<'_>) -> Result<Response<Incoming>, ObjectError> {
        let http = self.http.as_ref().map_err(|why| ObjectError(why.clone()))?;
        let url = self.url(call.key, call.query)?;
        let credentials = self.credentials().await?;
        let mut attempt = 1;
        loop {
            let mut request = signed(
                &call.method,
                &url,
                call.headers,
                SignableBody::Bytes(&call.body),
                &credentials,
                &self.region,
                SystemTime::now(),
                None,
            )?;
            let request = {
                let (parts, ()) = std::mem::replace(&mut request, Request::new(())).into_parts();
                Request::from_parts(parts, Full::new(call.body.clone()))
            };
            let why = match tokio::time::timeout(ANSWER_TIMEOUT, http.request(request)).await {
                Ok(Ok(answer)) if !matches!(answer.status().as_u16(), 500 | 503) || attempt == ATTEMPTS => {
                    return Ok(answer);
                }
                Ok(Ok(answer)) => format!("HTTP {}", answer.status()),
                Ok(Err(e)) => format!("{e}"),
                Err(_) => format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            };
            if attempt == ATTEMPTS {
                return Err(ObjectError(format!("{}: {why}", call.operation)));
            }
            tracing::warn!(operation = call.operation, attempt, error = %why, "S3 request failed; trying again");
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
            attempt += 1;
        }
    }
}

/// A request to `url` with `headers`, signed for S3 in `region` at `time`: in its headers, or
/// with `presign` in its query string for that long.
#[allow(clippy::too_many_arguments)]
fn signed(
    method: &Method,
    url: &str,
    headers: &[(&'static str, &str)],
    body: SignableBody<'_>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    presign: Option<Duration>,
) -> Result<Request<()>, ObjectError> {
    let signing = |e: &dyn std::fmt::Display| ObjectError(format!("signing the request: {e}"));
    let mut settings = SigningSettings::default();
    // S3 takes the path as it is sent: encoded once, never normalised.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    match presign {
        Some(valid) => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(valid);
        }
        // S3 wants the payload's hash in `x-amz-content-sha256`.
        None => settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256,
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
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

/// The error S3 answered, with its code and message when it sent them.
async fn failure(operation: &str, answer: Response<Incoming>) -> ObjectError {
    let status = answer.status();
    let text = match tokio::time::timeout(ANSWER_TIMEOUT, answer.into_body().collect()).await {
        Ok(Ok(body)) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        _ => String::new(),
    };
    ObjectError(format!("{operation}: HTTP {status}: {}", error_text(&text)))
}

fn error_text(xml: &str) -> String {
    match (xml_value(xml, "Code"), xml_value(xml, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => xml.chars().take(200).collect(),
    }
}

/// The text of the first `<tag>` element of `xml`, its entities read.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let text = &xml[start..end];
    Some(
        text.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `text` percent-encoded as S3's canonical requests want it: every byte but the unreserved
/// characters, and `/` too when `slash` (query values; a key's slashes separate its path).
fn encode(text: &str, slash: bool) -> String {
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

    /// The example credentials and time of S3's Signature Version 4 documentation.
    fn example() -> (Credentials, SystemTime) {
        let credentials =
            Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None, "test");
        (credentials, SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)) // 2013-05-24T00:00:00Z
    }

    #[test]
    fn a_signed_get_matches_s3s_documented_example() {
        let (credentials, time) = example();
        let url = "https://examplebucket.s3.amazonaws.com/test.txt";
        let headers = [("range", "bytes=0-9")];
        let request =
            signed(&Method::GET, url, &headers, SignableBody::Bytes(b""), &credentials, "us-east-1", time, None)
                .unwrap();
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert_eq!(
            authorization,
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
    fn a_presigned_url_matches_s3s_documented_example() {
        let (credentials, time) = example();
        let url = "https://examplebucket.s3.amazonaws.com/test.txt";
        let valid = Some(Duration::from_secs(86_400));
        let request =
            signed(&Method::GET, url, &[], SignableBody::UnsignedPayload, &credentials, "us-east-1", time, valid)
                .unwrap();
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
    fn urls_are_virtual_hosted_on_aws_and_path_style_under_an_endpoint() {
        let sdk = crate::adapters::aws::sdk_config_at("http://127.0.0.1:4566/");
        let local = Objects::new(&sdk, Some("files".into()));
        assert_eq!(
            local.url("exports/a b.csv", &[("partNumber", "1"), ("uploadId", "x/y+z=")]).unwrap(),
            "http://127.0.0.1:4566/files/exports/a%20b.csv?partNumber=1&uploadId=x%2Fy%2Bz%3D"
        );
        let aws = Objects { endpoint: None, region: "eu-west-1".into(), ..local.clone() };
        assert_eq!(
            aws.url("uploads/u.csv", &[("uploads", "")]).unwrap(),
            "https://files.s3.eu-west-1.amazonaws.com/uploads/u.csv?uploads="
        );
        let none = Objects { bucket: None, ..local };
        assert!(none.url("k", &[]).unwrap_err().to_string().contains("UPLOAD_BUCKET"));
    }

    #[test]
    fn s3s_xml_answers_are_read() {
        let created = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
                       <UploadId>VXBsb2FkIElE&amp;1</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(xml_value(created, "UploadId").as_deref(), Some("VXBsb2FkIElE&1"));
        let error = "<Error><Code>NoSuchUpload</Code><Message>The upload does not exist</Message></Error>";
        assert_eq!(error_text(error), "NoSuchUpload: The upload does not exist");
        assert_eq!(xml_escape("\"a&b<c>\""), "\"a&amp;b&lt;c&gt;\"");
    }
}
