//! What the workspace's tests share, so each test file says only what it
//! checks: a local-s3 started in-process on a random 127.0.0.1 port with
//! the buckets a test names, a client for it, and client settings whose
//! retries back off in milliseconds so fault tests stay quick. A dev
//! dependency only; nothing here ships in a Lambda.

use local_s3::LocalS3;
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use std::time::Duration;

/// A running local-s3 on its own temporary directory and a client for it.
/// Dropping it stops the server and removes the directory.
pub struct S3Fixture {
    pub server: LocalS3,
    pub client: aws_sdk_s3::Client,
    _dir: tempfile::TempDir,
}

impl S3Fixture {
    /// A server holding `buckets`, with a client whose retries are quick.
    pub async fn start(buckets: &[&str]) -> Self {
        Self::start_with(buckets, &fast_retries()).await
    }

    /// A server holding `buckets`, with a client built from `settings`.
    pub async fn start_with(buckets: &[&str], settings: &ClientSettings) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = LocalS3::start(dir.path()).await.expect("local-s3 starts");
        for bucket in buckets {
            server.create_bucket(bucket).expect("bucket");
        }
        let client = client_for_endpoint(&server.endpoint(), server.access_key(), server.secret_key(), settings);
        Self { server, client, _dir: dir }
    }

    /// Another client for the same server, e.g. with other retry settings.
    pub fn client_with(&self, settings: &ClientSettings) -> aws_sdk_s3::Client {
        client_for_endpoint(&self.server.endpoint(), self.server.access_key(), self.server.secret_key(), settings)
    }
}

/// The default client settings with back-off in milliseconds: a test that
/// injects faults waits for the retries, not for production back-off.
pub fn fast_retries() -> ClientSettings {
    ClientSettings { initial_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(50), ..Default::default() }
}
