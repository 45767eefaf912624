//! Writing one object whose size is not known in advance with bounded
//! memory: bytes accumulate up to a part size, and only past it does the
//! object become a multipart upload. A small output costs one PutObject.

use crate::error::{PutError, S3Failure};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

/// 8 MiB: above S3's 5 MiB minimum part, small enough to hold in a
/// 128 MB Lambda next to 64 in-flight fetches.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// What writing one object took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    /// S3 requests, the completing one included.
    pub requests: u64,
}

pub struct ObjectWriter {
    client: Client,
    bucket: String,
    key: String,
    content_type: Option<String>,
    part_size: usize,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    written: u64,
    requests: u64,
}

impl ObjectWriter {
    pub fn new(client: &Client, bucket: &str, key: &str) -> Self {
        Self {
            client: client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: None,
            part_size: DEFAULT_PART_SIZE,
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
            requests: 0,
        }
    }

    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// Parts below 5 MiB are refused by S3 (except the last).
    pub fn part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size;
        self
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// S3 requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn fail(&self, step: &'static str, failure: S3Failure) -> PutError {
        PutError::Failed { bucket: self.bucket.clone(), key: self.key.clone(), step, failure }
    }

    /// Appends bytes, uploading a part whenever a full one is buffered.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), PutError> {
        self.buffer.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        while self.buffer.len() >= self.part_size {
            let rest = self.buffer.split_off(self.part_size);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.upload_part(part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), PutError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                self.requests += 1;
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .set_content_type(self.content_type.clone())
                    .send()
                    .await
                    .map_err(|err| self.fail("CreateMultipartUpload", S3Failure::from_sdk(&err)))?;
                let id = created.upload_id().map(str::to_owned).ok_or_else(|| {
                    self.fail(
                        "CreateMultipartUpload",
                        S3Failure { code: None, status: None, message: "no UploadId".into() },
                    )
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let part_number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        self.requests += 1;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|err| self.fail("UploadPart", S3Failure::from_sdk(&err)))?;
        let etag = uploaded.e_tag().map(str::to_owned);
        self.parts.push(CompletedPart::builder().part_number(part_number).set_e_tag(etag).build());
        Ok(())
    }

    /// Completes the object: one PutObject if it never outgrew a part,
    /// otherwise the last part and CompleteMultipartUpload. On failure the
    /// multipart upload is aborted, so no half object and no billed parts
    /// are left behind.
    pub async fn finish(mut self) -> Result<Written, PutError> {
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.requests += 1;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .set_content_type(self.content_type.clone())
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|err| self.fail("PutObject", S3Failure::from_sdk(&err)))?;
            return Ok(Written { bytes: self.written, requests: self.requests });
        }
        let result = self.complete().await;
        let written = Written { bytes: self.written, requests: self.requests };
        if result.is_err() {
            self.abort().await;
        }
        result.map(|()| written)
    }

    async fn complete(&mut self) -> Result<(), PutError> {
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.upload_part(last).await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.requests += 1;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder().set_parts(Some(std::mem::take(&mut self.parts))).build(),
            )
            .send()
            .await
            .map_err(|err| self.fail("CompleteMultipartUpload", S3Failure::from_sdk(&err)))?;
        Ok(())
    }

    /// Abandons the object; nothing appears under its key.
    pub async fn abort(mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(err) = aborted {
                tracing::warn!(bucket = %self.bucket, key = %self.key, upload_id, error = %S3Failure::from_sdk(&err), "abort failed");
            }
        }
    }
}

/// Writes a small object in one PutObject.
pub async fn put_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<(), PutError> {
    put_once(client, bucket, key, body, content_type, Write::Always).await
}

/// Writes a small object only if it is still the version read: `read` is
/// the ETag read, or `None` when the object did not exist. `Ok(false)` when
/// another writer got there first (412, or S3's 409
/// ConditionalRequestConflict for writes that race).
pub async fn put_bytes_if_unchanged(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    read: Option<&str>,
) -> Result<bool, PutError> {
    let only = read.map_or(Write::IfAbsent, Write::OverVersion);
    match put_once(client, bucket, key, body, content_type, only).await {
        Ok(()) => Ok(true),
        Err(PutError::Failed { failure, .. })
            if failure.is_precondition_failed() || failure.code_is("ConditionalRequestConflict") =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// When a PutObject may write.
enum Write<'a> {
    Always,
    /// Only over the version with this ETag (`If-Match`).
    OverVersion(&'a str),
    /// Only where no object is (`If-None-Match: *`).
    IfAbsent,
}

async fn put_once(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    when: Write<'_>,
) -> Result<(), PutError> {
    let request = client.put_object().bucket(bucket).key(key).content_type(content_type);
    let request = match when {
        Write::Always => request,
        Write::OverVersion(etag) => request.if_match(etag),
        Write::IfAbsent => request.if_none_match("*"),
    };
    request.body(ByteStream::from(body)).send().await.map(|_| ()).map_err(|err| PutError::Failed {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        step: "PutObject",
        failure: S3Failure::from_sdk(&err),
    })
}
