//! Shared helpers for the integration tests: a server on a temp directory
//! and an aws-sdk-s3 client pointed at it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use local_s3::LocalS3;
use tempfile::TempDir;

pub struct Env {
    pub s3: LocalS3,
    pub client: Client,
    // Dropped last: the server must stop before its root disappears.
    pub dir: TempDir,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = LocalS3::start(dir.path()).await.expect("server starts");
    let client = client(&s3);
    Env { s3, client, dir }
}

pub fn client(s3: &LocalS3) -> Client {
    client_with(&s3.endpoint(), s3.access_key(), s3.secret_key(), RetryConfig::standard())
}

/// A client that sends each request exactly once, so fault tests can count.
pub fn client_no_retry(s3: &LocalS3) -> Client {
    client_with(&s3.endpoint(), s3.access_key(), s3.secret_key(), RetryConfig::disabled())
}

pub fn client_with(endpoint: &str, access_key: &str, secret_key: &str, retry: RetryConfig) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

/// HTTP status and S3 error code of a failed call.
pub fn status_and_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Option<u16>, Option<String>) {
    (err.raw_response().map(|r| r.status().as_u16()), err.code().map(str::to_owned))
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

/// The ETag S3 gives a multipart object made of these parts.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(Md5::digest(&all)), parts.len())
}

/// Percent-encodes a key for x-amz-copy-source, which the SDK sends as given.
pub fn copy_source(bucket: &str, key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    format!("{bucket}/{}", utf8_percent_encode(key, SET))
}
