//! The S3 adapter: the bucket that takes uploaded recipient files. A caller uploads with a
//! presigned `PUT` URL (the file never passes through a function); the import worker reads the
//! object as a stream, from any byte offset (a ranged `GET`), so its memory does not grow with
//! the file.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
#[error("S3: {0}")]
pub struct ObjectError(String);

fn s3_error<E: std::error::Error + 'static, R: std::fmt::Debug>(e: aws_sdk_s3::error::SdkError<E, R>) -> ObjectError {
    ObjectError(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

#[derive(Clone, Debug)]
pub struct Objects {
    client: aws_sdk_s3::Client,
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
    body: aws_sdk_s3::primitives::ByteStream,
}

impl ObjectStream {
    /// The next bytes, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, ObjectError>> {
        self.body.next().await.map(|r| r.map_err(|e| ObjectError(e.to_string())))
    }
}

impl Objects {
    /// The client for `sdk`: path-style addressing when an endpoint is set (the emulator has
    /// no per-bucket host names), and checksums only where S3 requires them, so a presigned
    /// URL carries none that a plain `curl -T` could not match.
    pub fn new(sdk: &crate::adapters::aws::SdkConfig, bucket: Option<String>) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        Objects { client: aws_sdk_s3::Client::from_conf(config), bucket }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    fn bucket(&self) -> Result<&str, ObjectError> {
        self.bucket.as_deref().ok_or_else(|| ObjectError("UPLOAD_BUCKET is not configured".into()))
    }

    /// A URL that lets its holder `PUT` one object at `key` for `valid` (no header is signed
    /// but the host, so any HTTP client can use it as it is).
    pub async fn presign_put(&self, key: &str, valid: Duration) -> Result<Presigned, ObjectError> {
        let presigning = PresigningConfig::expires_in(valid).map_err(|e| ObjectError(e.to_string()))?;
        let expires_at = chrono::Utc::now() + valid;
        let req = self.client.put_object().bucket(self.bucket()?).key(key);
        let url = req.presigned(presigning).await.map_err(s3_error)?.uri().to_string();
        Ok(Presigned { url, expires_at })
    }

    /// The object's size in bytes, `None` when there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match self.client.head_object().bucket(self.bucket()?).key(key).send().await {
            Ok(out) => Ok(Some(out.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    /// The object's bytes from `offset` on.
    pub async fn read_from(&self, key: &str, offset: u64) -> Result<ObjectStream, ObjectError> {
        let out =
            self.client.get_object().bucket(self.bucket()?).key(key).range(format!("bytes={offset}-")).send().await;
        Ok(ObjectStream { body: out.map_err(s3_error)?.body })
    }

    /// A URL that lets its holder `GET` the object at `key` for `valid`.
    pub async fn presign_get(&self, key: &str, valid: Duration) -> Result<Presigned, ObjectError> {
        let presigning = PresigningConfig::expires_in(valid).map_err(|e| ObjectError(e.to_string()))?;
        let expires_at = chrono::Utc::now() + valid;
        let req = self.client.get_object().bucket(self.bucket()?).key(key);
        let url = req.presigned(presigning).await.map_err(s3_error)?.uri().to_string();
        Ok(Presigned { url, expires_at })
    }

    /// Starts a multipart upload to `key`; returns its id.
    pub async fn start_parts(&self, key: &str, content_type: &str) -> Result<String, ObjectError> {
        let req = self.client.create_multipart_upload().bucket(self.bucket()?).key(key).content_type(content_type);
        let out = req.send().await.map_err(s3_error)?;
        out.upload_id.ok_or_else(|| ObjectError("S3 answered no upload id".into()))
    }

    /// Uploads part `number` (from 1) of a multipart upload; returns its ETag.
    pub async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        let req = self.client.upload_part().bucket(self.bucket()?).key(key).upload_id(upload_id).part_number(number);
        let out = req.body(bytes.into()).send().await.map_err(s3_error)?;
        out.e_tag.ok_or_else(|| ObjectError("S3 answered no ETag for the part".into()))
    }

    /// Completes a multipart upload from its parts (number and ETag, in order).
    pub async fn finish_parts(&self, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<(), ObjectError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = parts.iter().map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build());
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts.collect())).build();
        let req = self.client.complete_multipart_upload().bucket(self.bucket()?).key(key).upload_id(upload_id);
        req.multipart_upload(done).send().await.map_err(s3_error)?;
        Ok(())
    }
}
