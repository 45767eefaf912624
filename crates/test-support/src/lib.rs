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
    ClientSettings {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..Default::default()
    }
}

/// The key layouts a listing must handle, `n` keys each under `csvs/`, in
/// no particular order: flat sequential counters, random UUIDs, and date
/// folders (`csvs/2026/11/30/part-…`).
pub mod shapes {
    /// Every shape, by the name benches and reports use.
    pub const ALL: [&str; 3] = ["sequential", "random", "dated"];

    pub fn keys(shape: &str, n: u64) -> Vec<String> {
        match shape {
            "sequential" => sequential(n),
            "random" => random(n),
            "dated" => dated(n),
            other => panic!("unknown key shape {other:?}; one of {ALL:?}"),
        }
    }

    /// `csvs/f0000000.csv`, `csvs/f0000001.csv`, …
    pub fn sequential(n: u64) -> Vec<String> {
        (0..n).map(|i| format!("csvs/f{i:07}.csv")).collect()
    }

    /// `csvs/<uuid>.csv`: hex spread evenly, as UUID v4s are.
    pub fn random(n: u64) -> Vec<String> {
        (0..n).map(|i| format!("csvs/{}.csv", uuid_like(i))).collect()
    }

    /// `csvs/2026/MM/DD/part-NNNNNNN.csv` over 360 day folders.
    pub fn dated(n: u64) -> Vec<String> {
        (0..n).map(|i| format!("csvs/2026/{:02}/{:02}/part-{i:07}.csv", 1 + i % 12, 1 + (i / 12) % 30)).collect()
    }

    /// A UUID v4's text form, made from `i` by a mixing function so that
    /// keys are reproducible run to run.
    pub fn uuid_like(i: u64) -> String {
        let a = splitmix(i);
        let b = splitmix(a ^ i);
        let hex = format!("{a:016x}{b:016x}");
        format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..])
    }

    fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
