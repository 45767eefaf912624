//! The JSON documents the steps pass and write: payloads small whatever the
//! run's size, and the manifests, results and report kept under the run's
//! prefix. Reading and writing them lives here too, so a malformed one is
//! reported the same way wherever it is met.

use super::incremental::IncrementalRun;
use super::output::Compression;
use super::{MergeError, Requests};
use crate::fetch::get_object;
use crate::upload::put_bytes;
use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// What the batch generator returns: counts and one key, never key lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateOutput {
    pub run_id: String,
    pub source_bucket: String,
    pub source_prefix: String,
    pub dest_bucket: String,
    pub dest_prefix: String,
    pub run_prefix: String,
    pub total_files: u64,
    pub total_batches: u64,
    pub batches_key: String,
    /// The Map's ResultWriter Prefix: with it the Map's result is not held
    /// in the execution (where 256 KiB caps it at ~4,500 batches).
    pub map_results_prefix: String,
    pub batch_size: usize,
    pub single_output: bool,
    pub delete_sources: bool,
    pub options: RunOptions,
}

impl GenerateOutput {
    /// The csv-merger's input for one of the run's Map items, as the state
    /// machine builds it.
    pub fn merge_task(&self, batch: BatchItem) -> MergeTask {
        MergeTask {
            run_id: self.run_id.clone(),
            source_bucket: self.source_bucket.clone(),
            dest_bucket: self.dest_bucket.clone(),
            run_prefix: self.run_prefix.clone(),
            batch,
        }
    }

    /// The results-aggregator's input for the run, as the state machine
    /// builds it.
    pub fn aggregate_task(&self) -> AggregateTask {
        AggregateTask {
            run_id: self.run_id.clone(),
            source_bucket: self.source_bucket.clone(),
            dest_bucket: self.dest_bucket.clone(),
            run_prefix: self.run_prefix.clone(),
            single_output: self.single_output,
            delete_sources: self.delete_sources,
        }
    }
}

/// The options that shape a run's outputs, as its manifests, `run.json`
/// and report record them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    pub batch_size: usize,
    /// Batches were cut so their files' sizes add up to at most this.
    pub target_bytes: Option<u64>,
    pub compression: Compression,
    /// Only files no earlier incremental run of the stream merged.
    #[serde(default)]
    pub incremental: bool,
}

/// One element of `batches.json`, the Map's items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    pub batch_id: u64,
    pub manifest_key: String,
    pub output_key: String,
    pub file_count: usize,
    /// The summed sizes of the batch's files, as listed.
    #[serde(default)]
    pub source_bytes: u64,
}

/// `_manifests/batch-NNNNN.json`: the exact source keys of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub batch_id: u64,
    pub source_bucket: String,
    /// The run's header record (the first file's), so every batch agrees on
    /// it; `None` when no file had one.
    pub header: Option<String>,
    pub keys: Vec<String>,
    /// Absent in manifests written before options existed: plain CSV.
    #[serde(default)]
    pub options: RunOptions,
}

/// `_manifests/run.json`: what the generator did, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub source_bucket: String,
    pub source_prefix: String,
    pub dest_bucket: String,
    pub run_prefix: String,
    pub suffix: String,
    pub batch_size: usize,
    pub total_files: u64,
    pub total_batches: u64,
    pub header: Option<String>,
    #[serde(default)]
    pub options: RunOptions,
    /// Incremental runs: the window, and what was left to later runs.
    #[serde(default)]
    pub incremental: Option<IncrementalRun>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub requests: Requests,
}

/// The csv-merger's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTask {
    pub run_id: String,
    pub source_bucket: String,
    pub dest_bucket: String,
    pub run_prefix: String,
    pub batch: BatchItem,
}

/// The csv-merger's output, small whatever the batch size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub batch_id: u64,
    pub output_key: String,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub skipped: usize,
    pub ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub key: String,
    pub reason: String,
}

/// `_results/batch-NNNNN.json`: everything one batch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    #[serde(flatten)]
    pub summary: BatchSummary,
    pub merged_files: usize,
    pub empty_files: usize,
    pub header_only_files: usize,
    pub odd_rows: u64,
    /// The CSV's size before compression (equal to `bytes` for plain CSV).
    #[serde(default)]
    pub csv_bytes: u64,
    pub skipped_files: Vec<SkippedFile>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub requests: Requests,
}

/// The results-aggregator's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateTask {
    pub run_id: String,
    pub source_bucket: String,
    pub dest_bucket: String,
    pub run_prefix: String,
    #[serde(default)]
    pub single_output: bool,
    #[serde(default)]
    pub delete_sources: bool,
}

/// The results-aggregator's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSummary {
    pub run_id: String,
    pub report_key: String,
    pub total_files: u64,
    pub merged_files: u64,
    pub skipped_files: u64,
    pub rows: u64,
    pub outputs: u64,
    pub failed_batches: u64,
    pub merged_key: Option<String>,
    pub deleted_sources: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    pub batch_id: u64,
    pub key: String,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedBatch {
    pub batch_id: u64,
    pub manifest_key: String,
    pub file_count: usize,
    pub reason: String,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub options: RunOptions,
    #[serde(default)]
    pub incremental: Option<IncrementalRun>,
    pub total_files: u64,
    pub total_batches: u64,
    pub merged_files: u64,
    pub empty_files: u64,
    pub header_only_files: u64,
    pub skipped_files: u64,
    pub rows: u64,
    pub odd_rows: u64,
    pub bytes: u64,
    pub header: Option<String>,
    pub outputs: Vec<OutputEntry>,
    pub skipped: Vec<SkippedFile>,
    pub failed_batches: Vec<FailedBatch>,
    pub merged_key: Option<String>,
    pub deleted_sources: u64,
    pub delete_failures: Vec<SkippedFile>,
    pub started_at_ms: u64,
    pub batches_started_at_ms: Option<u64>,
    pub batches_finished_at_ms: Option<u64>,
    pub finished_at_ms: u64,
    pub wall_ms: u64,
    pub batch_ms: BatchTimings,
    pub requests: Requests,
    /// What these S3 requests cost at the prices of `cost.prices_date`.
    pub s3_request_cost: Option<crate::cost::Estimate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTimings {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}
pub(super) async fn get_json<T: DeserializeOwned>(
    client: &Client,
    bucket: &str,
    key: &str,
    what: &'static str,
) -> Result<T, MergeError> {
    let body = get_object(client, bucket, key).await?;
    serde_json::from_slice(&body).map_err(|err| MergeError::BadDocument {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        what,
        reason: err.to_string(),
    })
}

/// Writes a document people read (run.json, report.json, a batch's
/// result), indented.
pub(super) async fn put_json<T: Serialize>(
    client: &Client,
    bucket: &str,
    key: &str,
    value: &T,
) -> Result<(), MergeError> {
    put_document(client, bucket, key, serde_json::to_vec_pretty(value)).await
}

/// Writes a document only the steps read (manifests, batches.json) without
/// indentation: a run writes one per 1,000 files, and indenting a
/// manifest's keys was 2.8% of the batch-generator's CPU and an eighth of
/// its bytes, which are signed, sent and hashed again by S3.
pub(super) async fn put_compact_json<T: Serialize>(
    client: &Client,
    bucket: &str,
    key: &str,
    value: &T,
) -> Result<(), MergeError> {
    put_document(client, bucket, key, serde_json::to_vec(value)).await
}

async fn put_document(
    client: &Client,
    bucket: &str,
    key: &str,
    body: serde_json::Result<Vec<u8>>,
) -> Result<(), MergeError> {
    let body = body.map_err(|err| MergeError::BadDocument {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        what: "JSON document",
        reason: err.to_string(),
    })?;
    put_bytes(client, bucket, key, body, "application/json").await?;
    Ok(())
}
