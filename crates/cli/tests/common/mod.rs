//! What several test files share.

use s3mm_core::{MergeConfig, MoverConfig};

/// The mover layout the in-process tests use: `s3://src/in/` moved to
/// `s3://dst/out/`, sources deleted.
pub fn mover_config(fetch_concurrency: usize) -> MoverConfig {
    MoverConfig {
        dest_bucket: "dst".into(),
        dest_prefix: "out/".into(),
        source_prefix: "in/".into(),
        keep_source_prefix: false,
        source_bucket: Some("src".into()),
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency,
        sdk_only: false,
    }
}

/// A csv-merger as the function builds it, with `fetch_concurrency` GETs in
/// flight.
#[allow(dead_code)] // not every test file merges
pub fn merger(client: &aws_sdk_s3::Client, fetch_concurrency: usize) -> csv_merger::Handler {
    csv_merger::Handler::new(client.clone(), &MergeConfig { fetch_concurrency, ..MergeConfig::default() })
}
