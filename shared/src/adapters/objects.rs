//! The S3 adapter: the bucket that takes uploaded recipient files and results exports. A
//! caller uploads with a presigned `PUT` URL (the file never passes through a function); the
//! import worker reads the object as a stream, from any byte offset (a ranged `GET`), so its
//! memory does not grow with the file; an export is written as a multipart upload and fetched
//! with a presigned `GET` URL.
//!
//! These eight calls are S3's REST API signed by hand ([`super::sigv4`]) rather than through
//! the SDK's S3 client: that client, with its checksum tables and models of every S3
//! operation, was an eighth of the function binary for eight calls. Requests go to the
//! bucket's virtual-hosted address (`https://<bucket>.s3.<region>.amazonaws.com/<key>`), or
//! path-style under an endpoint when one is set (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`:
//! the emulator).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::adapters::sigv4::{self, ANSWER_TIMEOUT, Call, Service, Signer, encode};

#[derive(Debug, thiserror::Error)]
#[error("S3: {0}")]
pub struct ObjectError(String);

#[derive(Clone, Debug)]
pub struct Objects {
    signer: Signer,
    /// Path-style base URL (an emulator), or `None` for S3's virtual-hosted addresses.
    endpoint: Option<String>,
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

impl Objects {
    /// The client for `sdk`'s region, credentials and S3 endpoint.
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, bucket: Option<String>) -> Self {
        let endpoint = crate::adapters::aws::endpoint(sdk, "S3").map(|e| e.trim_end_matches('/').to_string());
        Objects { signer: Signer::new(sdk), endpoint, bucket }
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
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{path}", self.signer.region()),
        };
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(name, true));
            url.push('=');
            url.push_str(&encode(value, true));
        }
        Ok(url)
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
        let url = self.signer.presign(Service::S3, &method, &url, valid).await.map_err(ObjectError)?;
        Ok(Presigned { url, expires_at: chrono::Utc::now() + valid })
    }

    /// The object's size in bytes, `None` when there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        let answer = self.send("HeadObject", Method::HEAD, key, &[], &[], Bytes::new()).await?;
        match answer.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let length = answer.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
                Ok(Some(length.and_then(|v| v.parse().ok()).unwrap_or(0)))
            }
            _ => Err(failure("HeadObject", answer).await),
        }
    }

    /// The object's bytes from `offset` on.
    pub async fn read_from(&self, key: &str, offset: u64) -> Result<ObjectStream, ObjectError> {
        let range = format!("bytes={offset}-");
        let answer = self.send("GetObject", Method::GET, key, &[], &[("range", &range)], Bytes::new()).await?;
        Ok(ObjectStream { body: succeeded("GetObject", answer).await?.into_body() })
    }

    /// Starts a multipart upload to `key`; returns its id.
    pub async fn start_parts(&self, key: &str, content_type: &str) -> Result<String, ObjectError> {
        let (query, headers) = ([("uploads", "")], [("content-type", content_type)]);
        let answer = self.send("CreateMultipartUpload", Method::POST, key, &query, &headers, Bytes::new()).await?;
        let text = read("CreateMultipartUpload", answer).await?;
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
        let answer = self.send("UploadPart", Method::PUT, key, &query, &[], bytes.into()).await?;
        let answer = succeeded("UploadPart", answer).await?;
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
        let (query, headers) = ([("uploadId", upload_id)], [("content-type", "application/xml")]);
        let operation = "CompleteMultipartUpload";
        let answer = self.send(operation, Method::POST, key, &query, &headers, body.into()).await?;
        let text = read(operation, answer).await?;
        // S3 may answer 200 and then report an error in the body.
        if text.contains("<Error>") {
            return Err(ObjectError(format!("{operation}: {}", error_text(&text))));
        }
        Ok(())
    }

    /// Sends a request for `key`, signed (and again after a transient failure); answers
    /// whatever status S3 gave.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Response<Incoming>, ObjectError> {
        let url = self.url(key, query)?;
        let call = Call { operation, method, url: &url, headers, body };
        self.signer.send(Service::S3, &call).await.map_err(ObjectError)
    }
}

/// `answer` when it is a success, else the error S3 answered.
async fn succeeded(operation: &str, answer: Response<Incoming>) -> Result<Response<Incoming>, ObjectError> {
    if answer.status().is_success() { Ok(answer) } else { Err(failure(operation, answer).await) }
}

/// The whole of a successful answer, as text.
async fn read(operation: &str, answer: Response<Incoming>) -> Result<String, ObjectError> {
    let answer = succeeded(operation, answer).await?;
    sigv4::text(answer).await.map_err(|e| ObjectError(format!("{operation}: {e}")))
}

/// The error S3 answered, with its code and message when it sent them.
async fn failure(operation: &str, answer: Response<Incoming>) -> ObjectError {
    let status = answer.status();
    let text = sigv4::text(answer).await.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_virtual_hosted_on_aws_and_path_style_under_an_endpoint() {
        let sdk = crate::adapters::aws::sdk_config_at("http://127.0.0.1:4566/");
        let local = Objects::new(&sdk, Some("files".into()));
        assert_eq!(
            local.url("exports/a b.csv", &[("partNumber", "1"), ("uploadId", "x/y+z=")]).unwrap(),
            "http://127.0.0.1:4566/files/exports/a%20b.csv?partNumber=1&uploadId=x%2Fy%2Bz%3D"
        );
        let sdk = aws_types::SdkConfig::builder().region(aws_types::region::Region::new("eu-west-1")).build();
        let aws = Objects::new(&sdk, Some("files".into()));
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
