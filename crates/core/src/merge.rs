//! The CSV merge in three steps, each one Lambda invocation (or one call of
//! the CLI), passing the small JSON documents of DESIGN.md between them:
//!
//! 1. [`generate_batches`] lists the source prefix once, writes one manifest
//!    per batch and `_manifests/batches.json`, and returns only counts, so
//!    its output does not grow with the number of files;
//! 2. [`merge_batch`] fetches one manifest's files concurrently and writes one
//!    CSV, rows in manifest order, plus its result document;
//! 3. [`aggregate`] reads every result, writes `report.json`, and optionally
//!    concatenates the outputs into `merged.csv` and deletes the sources.
//!
//! Everything a run writes lives under `{dest_prefix}{run_id}/`, and every
//! step overwrites the same keys when repeated, so retries are idempotent.

use crate::csv_merge::{CsvMerger, FileOutcome};
use crate::delete::delete_many;
use crate::error::{GetError, ListError, PutError};
use crate::fetch::{Fetched, fetch_many, get_object};
use crate::keys::folder_prefix;
use crate::list::{ListOptions, list_objects};
use crate::upload::{ObjectWriter, Written, put_bytes};
use aws_sdk_s3::Client;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const DEFAULT_SUFFIX: &str = ".csv";
/// Manifests written at once by the batch generator.
const MANIFEST_WRITES_IN_FLIGHT: usize = 16;
/// Result documents and outputs read at once by the aggregator.
const AGGREGATE_READS_IN_FLIGHT: usize = 32;
/// Files tried when looking for the run's header.
const HEADER_PROBES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("execution input field `{field}`: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("no files ending in {suffix:?} under s3://{bucket}/{prefix}: nothing to merge")]
    EmptyPrefix { bucket: String, prefix: String, suffix: String },
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Get(#[from] GetError),
    #[error(transparent)]
    Put(#[from] PutError),
    #[error("s3://{bucket}/{key} is not a valid {what}: {reason}")]
    BadDocument { bucket: String, key: String, what: &'static str, reason: String },
}

impl MergeError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::List(ListError::Failed { failure, .. }) => failure.is_transient(),
            Self::Get(err) => err.is_transient(),
            Self::Put(err) => err.is_transient(),
            _ => false,
        }
    }

    /// The `errorType` a Step Functions Retry or Catch names: transient S3
    /// trouble is retried, the rest fails the step at once.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "InvalidInput",
            Self::EmptyPrefix { .. } => "EmptyPrefix",
            err if err.is_transient() => "TransientS3Error",
            _ => "MergeFailed",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------- payloads

/// The execution input, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRequest {
    pub source_bucket: String,
    pub source_prefix: String,
    pub dest_bucket: String,
    pub dest_prefix: String,
    pub batch_size: usize,
    pub run_id: String,
    pub single_output: bool,
    pub delete_sources: bool,
    pub suffix: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> MergeError {
    MergeError::InvalidInput { field, reason: reason.into() }
}

fn string_field(input: &Value, field: &'static str, required: bool) -> Result<Option<String>, MergeError> {
    match input.get(field) {
        None | Some(Value::Null) if required => Err(invalid(field, "is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(field, format!("must be a string, got {other}"))),
    }
}

fn bool_field(input: &Value, field: &'static str) -> Result<bool, MergeError> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(field, format!("must be true or false, got {other}"))),
    }
}

fn bucket_field(input: &Value, field: &'static str) -> Result<String, MergeError> {
    let name = string_field(input, field, true)?.unwrap_or_default();
    crate::config::validate_bucket_name(field, &name).map_err(|err| invalid(field, err.to_string()))?;
    Ok(name)
}

impl MergeRequest {
    /// Validates an execution input. `run_id` defaults to `execution_name`
    /// (the state machine passes the execution's name) and then to
    /// `fallback_run_id`; `batch_size` defaults to `default_batch_size`.
    pub fn from_input(input: &Value, default_batch_size: usize, fallback_run_id: &str) -> Result<Self, MergeError> {
        if !input.is_object() {
            return Err(invalid("(input)", format!("must be a JSON object, got {input}")));
        }
        let batch_size = match input.get("batch_size") {
            None | Some(Value::Null) => default_batch_size,
            Some(value) => value
                .as_u64()
                .filter(|n| (1..=crate::config::MAX_BATCH_SIZE as u64).contains(n))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(
                        "batch_size",
                        format!("must be a whole number from 1 to {}, got {value}", crate::config::MAX_BATCH_SIZE),
                    )
                })?,
        };
        let run_id = match string_field(input, "run_id", false)? {
            Some(id) => id,
            None => string_field(input, "execution_name", false)?.unwrap_or_else(|| fallback_run_id.to_owned()),
        };
        let valid_run_id = !run_id.is_empty()
            && run_id.len() <= 128
            && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:=@+".contains(&b));
        if !valid_run_id {
            return Err(invalid("run_id", format!("{run_id:?} must be 1-128 characters of A-Z a-z 0-9 - _ . : = @ +")));
        }
        let suffix = string_field(input, "suffix", false)?.unwrap_or_else(|| DEFAULT_SUFFIX.to_owned());
        Ok(Self {
            source_bucket: bucket_field(input, "source_bucket")?,
            source_prefix: folder_prefix(&string_field(input, "source_prefix", true)?.unwrap_or_default()),
            dest_bucket: bucket_field(input, "dest_bucket")?,
            dest_prefix: folder_prefix(&string_field(input, "dest_prefix", true)?.unwrap_or_default()),
            batch_size,
            run_id,
            single_output: bool_field(input, "single_output")?,
            delete_sources: bool_field(input, "delete_sources")?,
            suffix,
        })
    }

    pub fn run_prefix(&self) -> String {
        format!("{}{}/", self.dest_prefix, self.run_id)
    }

    /// Keys never read as sources: a run's outputs (and earlier runs'
    /// outputs) when they live under the source prefix of the same bucket.
    fn excluded_prefix(&self) -> Option<String> {
        (self.source_bucket == self.dest_bucket)
            .then(|| if self.dest_prefix.is_empty() { self.run_prefix() } else { self.dest_prefix.clone() })
    }
}

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
    pub batch_size: usize,
    pub single_output: bool,
    pub delete_sources: bool,
}

/// One element of `batches.json`, the Map's items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    pub batch_id: u64,
    pub manifest_key: String,
    pub output_key: String,
    pub file_count: usize,
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
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub requests: Requests,
}

/// S3 requests made by a step, by operation (SDK retries not included).
pub type Requests = BTreeMap<String, u64>;

fn count(requests: &mut Requests, operation: &str, n: u64) {
    if n > 0 {
        *requests.entry(operation.to_owned()).or_default() += n;
    }
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

// ------------------------------------------------------------------ keys

pub fn manifest_key(run_prefix: &str, batch_id: u64) -> String {
    format!("{run_prefix}_manifests/batch-{batch_id:05}.json")
}

pub fn batches_key(run_prefix: &str) -> String {
    format!("{run_prefix}_manifests/batches.json")
}

pub fn run_info_key(run_prefix: &str) -> String {
    format!("{run_prefix}_manifests/run.json")
}

pub fn output_key(run_prefix: &str, batch_id: u64) -> String {
    format!("{run_prefix}merged-{batch_id:05}.csv")
}

pub fn result_key(run_prefix: &str, batch_id: u64) -> String {
    format!("{run_prefix}_results/batch-{batch_id:05}.json")
}

pub fn report_key(run_prefix: &str) -> String {
    format!("{run_prefix}report.json")
}

pub fn merged_key(run_prefix: &str) -> String {
    format!("{run_prefix}merged.csv")
}

async fn get_json<T: DeserializeOwned>(
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

async fn put_json<T: Serialize>(client: &Client, bucket: &str, key: &str, value: &T) -> Result<(), MergeError> {
    let body = serde_json::to_vec_pretty(value).map_err(|err| MergeError::BadDocument {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        what: "JSON document",
        reason: err.to_string(),
    })?;
    put_bytes(client, bucket, key, body, "application/json").await?;
    Ok(())
}

// ------------------------------------------------------------- step 1

/// Finds the run's header: the header record of the first listed file that
/// has one.
async fn probe_header(
    client: &Client,
    bucket: &str,
    keys: &[String],
    requests: &mut Requests,
) -> Result<Option<String>, MergeError> {
    for key in keys.iter().take(HEADER_PROBES) {
        count(requests, "GetObject", 1);
        let body = match get_object(client, bucket, key).await {
            Ok(body) => body,
            Err(GetError::NoSuchKey { .. }) => continue,
            Err(err) => return Err(err.into()),
        };
        let mut merger = CsvMerger::new();
        merger.push(&body);
        if let Some(line) = merger.header_line() {
            // A header that is not UTF-8 cannot travel in JSON; each batch
            // then takes its first file's header instead.
            return Ok(String::from_utf8(line).ok());
        }
    }
    Ok(None)
}

/// Step 1: lists the source prefix and writes the manifests.
pub async fn generate_batches(client: &Client, request: &MergeRequest) -> Result<GenerateOutput, MergeError> {
    let started_at_ms = now_ms();
    let run_prefix = request.run_prefix();
    let pages = Arc::new(AtomicU64::new(0));
    let options = ListOptions {
        suffix: Some(request.suffix.clone()).filter(|s| !s.is_empty()),
        exclude_prefix: request.excluded_prefix(),
        pages: Some(pages.clone()),
        ..ListOptions::default()
    };
    let mut requests = Requests::new();
    let mut chunks = list_objects(client, &request.source_bucket, &request.source_prefix, options)
        .map_ok(|object| object.key)
        .try_chunks(request.batch_size);
    let mut header: Option<Option<String>> = None;
    let mut items = Vec::new();
    let mut pending = Vec::new();
    let mut total_files = 0u64;
    while let Some(chunk) = chunks.next().await {
        let keys = chunk.map_err(|err| err.1)?;
        if header.is_none() {
            header = Some(probe_header(client, &request.source_bucket, &keys, &mut requests).await?);
        }
        let batch_id = items.len() as u64;
        total_files += keys.len() as u64;
        items.push(BatchItem {
            batch_id,
            manifest_key: manifest_key(&run_prefix, batch_id),
            output_key: output_key(&run_prefix, batch_id),
            file_count: keys.len(),
        });
        pending.push(Manifest {
            run_id: request.run_id.clone(),
            batch_id,
            source_bucket: request.source_bucket.clone(),
            header: header.clone().flatten(),
            keys,
        });
        // Manifests go out while the listing goes on, a few at a time, so
        // memory holds at most a few batches of keys.
        if pending.len() >= MANIFEST_WRITES_IN_FLIGHT {
            write_manifests(client, &request.dest_bucket, &run_prefix, std::mem::take(&mut pending)).await?;
            count(&mut requests, "PutObject", MANIFEST_WRITES_IN_FLIGHT as u64);
        }
    }
    count(&mut requests, "PutObject", pending.len() as u64);
    write_manifests(client, &request.dest_bucket, &run_prefix, pending).await?;
    if items.is_empty() {
        return Err(MergeError::EmptyPrefix {
            bucket: request.source_bucket.clone(),
            prefix: request.source_prefix.clone(),
            suffix: request.suffix.clone(),
        });
    }
    count(&mut requests, "ListObjectsV2", pages.load(Ordering::Relaxed));
    count(&mut requests, "PutObject", 2);
    let key = batches_key(&run_prefix);
    put_json(client, &request.dest_bucket, &key, &items).await?;
    let total_batches = items.len() as u64;
    let info = RunInfo {
        run_id: request.run_id.clone(),
        source_bucket: request.source_bucket.clone(),
        source_prefix: request.source_prefix.clone(),
        dest_bucket: request.dest_bucket.clone(),
        run_prefix: run_prefix.clone(),
        suffix: request.suffix.clone(),
        batch_size: request.batch_size,
        total_files,
        total_batches,
        header: header.flatten(),
        started_at_ms,
        finished_at_ms: now_ms(),
        requests,
    };
    put_json(client, &request.dest_bucket, &run_info_key(&run_prefix), &info).await?;
    Ok(GenerateOutput {
        run_id: request.run_id.clone(),
        source_bucket: request.source_bucket.clone(),
        source_prefix: request.source_prefix.clone(),
        dest_bucket: request.dest_bucket.clone(),
        dest_prefix: request.dest_prefix.clone(),
        run_prefix,
        total_files,
        total_batches,
        batches_key: key,
        batch_size: request.batch_size,
        single_output: request.single_output,
        delete_sources: request.delete_sources,
    })
}

async fn write_manifests(
    client: &Client,
    bucket: &str,
    run_prefix: &str,
    manifests: Vec<Manifest>,
) -> Result<(), MergeError> {
    stream::iter(manifests)
        .map(|manifest| async move {
            put_json(client, bucket, &manifest_key(run_prefix, manifest.batch_id), &manifest).await
        })
        .buffer_unordered(MANIFEST_WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

// ------------------------------------------------------------- step 2

/// Step 2: merges one batch into one CSV and records what it did.
pub async fn merge_batch(client: &Client, task: &MergeTask, concurrency: usize) -> Result<BatchSummary, MergeError> {
    let started = Instant::now();
    let started_at_ms = now_ms();
    let mut requests = Requests::new();
    count(&mut requests, "GetObject", 1);
    let manifest: Manifest = get_json(client, &task.dest_bucket, &task.batch.manifest_key, "batch manifest").await?;
    let mut merger = match &manifest.header {
        Some(header) => CsvMerger::with_header(header.as_bytes()),
        None => CsvMerger::new(),
    };
    let writer = ObjectWriter::new(client, &task.dest_bucket, &task.batch.output_key).content_type("text/csv");
    let files = manifest.keys.len();
    let (mut merged_files, mut empty_files, mut header_only_files, mut odd_rows) = (0, 0, 0, 0);
    let mut skipped_files = Vec::new();
    count(&mut requests, "GetObject", files as u64);
    let fetched = fetch_many(client, &manifest.source_bucket, manifest.keys, concurrency);
    let written = write_merged(fetched, &mut merger, writer, |merger, file| {
        match file.result {
            Ok(body) => match merger.push(&body) {
                FileOutcome::Merged { odd_rows: odd, .. } => {
                    merged_files += 1;
                    odd_rows += odd;
                }
                FileOutcome::Empty => empty_files += 1,
                FileOutcome::HeaderOnly => header_only_files += 1,
                FileOutcome::HeaderMismatch { expected, found } => skipped_files.push(SkippedFile {
                    key: file.key,
                    reason: format!("header {found:?} differs from the run's header {expected:?}"),
                }),
                FileOutcome::UnclosedQuote => skipped_files.push(SkippedFile {
                    key: file.key,
                    reason: "ends inside a quoted field (truncated?); merging it would swallow the rows after it"
                        .into(),
                }),
            },
            Err(GetError::NoSuchKey { .. }) => {
                skipped_files.push(SkippedFile { key: file.key, reason: "deleted after it was listed".into() })
            }
            Err(err) if err.is_transient() => return Err(err.into()),
            Err(err) => skipped_files.push(SkippedFile { key: file.key, reason: err.to_string() }),
        }
        Ok(())
    })
    .await?;
    count(&mut requests, "PutObject", written.requests + 1);
    let bytes = written.bytes;
    let summary = BatchSummary {
        batch_id: task.batch.batch_id,
        output_key: task.batch.output_key.clone(),
        files,
        rows: merger.rows(),
        bytes,
        skipped: skipped_files.len(),
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let result = BatchResult {
        summary: summary.clone(),
        merged_files,
        empty_files,
        header_only_files,
        odd_rows,
        skipped_files,
        started_at_ms,
        finished_at_ms: now_ms(),
        requests,
    };
    put_json(client, &task.dest_bucket, &result_key(&task.run_prefix, task.batch.batch_id), &result).await?;
    Ok(summary)
}

// ------------------------------------------------------------- step 3

/// Step 3: the report, and with it the single output and source deletion
/// when asked for and safe.
pub async fn aggregate(client: &Client, task: &AggregateTask) -> Result<AggregateSummary, MergeError> {
    let bucket = task.dest_bucket.as_str();
    let run_prefix = task.run_prefix.as_str();
    let mut requests = Requests::new();
    count(&mut requests, "GetObject", 2);
    let info: RunInfo = get_json(client, bucket, &run_info_key(run_prefix), "run description").await?;
    let items: Vec<BatchItem> = get_json(client, bucket, &batches_key(run_prefix), "batch list").await?;
    for (operation, n) in &info.requests {
        count(&mut requests, operation, *n);
    }

    count(&mut requests, "GetObject", items.len() as u64);
    let result_keys: Vec<String> = items.iter().map(|item| result_key(run_prefix, item.batch_id)).collect();
    let fetched: Vec<_> = fetch_many(client, bucket, result_keys, AGGREGATE_READS_IN_FLIGHT).collect().await;
    let mut results = Vec::new();
    let mut failed_batches = Vec::new();
    for (item, file) in items.iter().zip(fetched) {
        match file.result {
            Ok(body) => match serde_json::from_slice::<BatchResult>(&body) {
                Ok(result) => results.push(result),
                Err(err) => failed_batches.push(FailedBatch {
                    batch_id: item.batch_id,
                    manifest_key: item.manifest_key.clone(),
                    file_count: item.file_count,
                    reason: format!("result document unreadable: {err}"),
                }),
            },
            Err(GetError::NoSuchKey { .. }) => failed_batches.push(FailedBatch {
                batch_id: item.batch_id,
                manifest_key: item.manifest_key.clone(),
                file_count: item.file_count,
                reason: "no result: the batch did not complete".into(),
            }),
            Err(err) => return Err(err.into()),
        }
    }

    let mut report = Report {
        run_id: task.run_id.clone(),
        source: format!("s3://{}/{}", info.source_bucket, info.source_prefix),
        destination: format!("s3://{bucket}/{run_prefix}"),
        total_files: info.total_files,
        total_batches: info.total_batches,
        merged_files: 0,
        empty_files: 0,
        header_only_files: 0,
        skipped_files: 0,
        rows: 0,
        odd_rows: 0,
        bytes: 0,
        header: info.header.clone(),
        outputs: Vec::new(),
        skipped: Vec::new(),
        failed_batches,
        merged_key: None,
        deleted_sources: 0,
        delete_failures: Vec::new(),
        started_at_ms: info.started_at_ms,
        batches_started_at_ms: results.iter().map(|r| r.started_at_ms).min(),
        batches_finished_at_ms: results.iter().map(|r| r.finished_at_ms).max(),
        finished_at_ms: 0,
        wall_ms: 0,
        batch_ms: BatchTimings::default(),
        requests: Requests::new(),
        s3_request_cost: None,
    };
    let mut timings: Vec<u64> = Vec::new();
    for result in &results {
        report.merged_files += result.merged_files as u64;
        report.empty_files += result.empty_files as u64;
        report.header_only_files += result.header_only_files as u64;
        report.skipped_files += result.skipped_files.len() as u64;
        report.rows += result.summary.rows;
        report.odd_rows += result.odd_rows;
        report.bytes += result.summary.bytes;
        report.skipped.extend(result.skipped_files.iter().cloned());
        report.outputs.push(OutputEntry {
            batch_id: result.summary.batch_id,
            key: result.summary.output_key.clone(),
            files: result.summary.files,
            rows: result.summary.rows,
            bytes: result.summary.bytes,
            ms: result.summary.ms,
        });
        timings.push(result.summary.ms);
        for (operation, n) in &result.requests {
            count(&mut requests, operation, *n);
        }
    }
    timings.sort_unstable();
    if let (Some(min), Some(max)) = (timings.first(), timings.last()) {
        report.batch_ms = BatchTimings { min: *min, median: timings[timings.len() / 2], max: *max };
    }
    let complete = report.failed_batches.is_empty();

    if task.single_output && complete {
        let key = merged_key(run_prefix);
        let written = concatenate(client, bucket, &key, info.header.as_deref(), &report.outputs).await?;
        count(&mut requests, "GetObject", report.outputs.len() as u64);
        count(&mut requests, "PutObject", written);
        report.merged_key = Some(key);
    }

    // The report is written before any source is deleted: if deleting
    // fails part-way, the report already says what was merged.
    let report_key = report_key(run_prefix);
    count(&mut requests, "PutObject", 1);
    finish_report(&mut report, &requests);
    put_json(client, bucket, &report_key, &report).await?;

    if task.delete_sources && complete {
        let (deleted, failures, used) = delete_merged_sources(client, bucket, &items, &report).await?;
        for (operation, n) in used {
            count(&mut requests, &operation, n);
        }
        report.deleted_sources = deleted;
        report.delete_failures = failures;
        count(&mut requests, "PutObject", 1);
        finish_report(&mut report, &requests);
        put_json(client, bucket, &report_key, &report).await?;
    }

    Ok(AggregateSummary {
        run_id: task.run_id.clone(),
        report_key,
        total_files: report.total_files,
        merged_files: report.merged_files,
        skipped_files: report.skipped_files,
        rows: report.rows,
        outputs: report.outputs.len() as u64,
        failed_batches: report.failed_batches.len() as u64,
        merged_key: report.merged_key.clone(),
        deleted_sources: report.deleted_sources,
    })
}

fn finish_report(report: &mut Report, requests: &Requests) {
    report.finished_at_ms = now_ms();
    report.wall_ms = report.finished_at_ms.saturating_sub(report.started_at_ms);
    report.requests = requests.clone();
    let table = crate::cost::prices();
    let lines = crate::cost::s3_requests(&table, requests);
    report.s3_request_cost = Some(crate::cost::Estimate::from_lines(&table, lines));
}

/// Streams every batch output, in batch order, into one CSV with the header
/// once. Returns the S3 write requests made.
async fn concatenate(
    client: &Client,
    bucket: &str,
    key: &str,
    header: Option<&str>,
    outputs: &[OutputEntry],
) -> Result<u64, MergeError> {
    let mut merger = match header {
        Some(header) => CsvMerger::with_header(header.as_bytes()),
        None => CsvMerger::new(),
    };
    let writer = ObjectWriter::new(client, bucket, key).content_type("text/csv");
    let keys: Vec<String> = outputs.iter().map(|o| o.key.clone()).collect();
    // Few in flight: each body is a whole batch output.
    let fetched = fetch_many(client, bucket, keys, 4);
    let written = write_merged(fetched, &mut merger, writer, |merger, file| {
        let body = file.result?;
        match merger.push(&body) {
            FileOutcome::HeaderMismatch { expected, found } => Err(MergeError::BadDocument {
                bucket: bucket.to_owned(),
                key: file.key,
                what: "batch output",
                reason: format!("its header {found:?} is not the run's header {expected:?}"),
            }),
            FileOutcome::UnclosedQuote => Err(MergeError::BadDocument {
                bucket: bucket.to_owned(),
                key: file.key,
                what: "batch output",
                reason: "it ends inside a quoted field".into(),
            }),
            _ => Ok(()),
        }
    })
    .await?;
    Ok(written.requests)
}

/// Feeds every fetched file to `on_file` (which pushes it into `merger`)
/// and the merged bytes to `writer` a part at a time, then completes the
/// object. On any error the upload is aborted: nothing partial ever
/// appears under the output's key.
async fn write_merged<S, F>(
    mut fetched: S,
    merger: &mut CsvMerger,
    mut writer: ObjectWriter,
    mut on_file: F,
) -> Result<Written, MergeError>
where
    S: Stream<Item = Fetched> + Unpin,
    F: FnMut(&mut CsvMerger, Fetched) -> Result<(), MergeError>,
{
    let outcome: Result<(), MergeError> = async {
        while let Some(file) = fetched.next().await {
            on_file(merger, file)?;
            if merger.buffered() >= crate::upload::DEFAULT_PART_SIZE {
                writer.write(&merger.take()).await?;
            }
        }
        writer.write(&merger.take()).await?;
        Ok(())
    }
    .await;
    if let Err(err) = outcome {
        writer.abort().await;
        return Err(err);
    }
    Ok(writer.finish().await?)
}

/// Deletes the sources the report shows merged: every manifest key but the
/// skipped ones. Files that were empty or held only the header are counted
/// as merged: everything they held is in the output.
async fn delete_merged_sources(
    client: &Client,
    bucket: &str,
    items: &[BatchItem],
    report: &Report,
) -> Result<(u64, Vec<SkippedFile>, Requests), MergeError> {
    let skipped: std::collections::HashSet<&str> = report.skipped.iter().map(|s| s.key.as_str()).collect();
    let mut deleted = 0;
    let mut failures = Vec::new();
    let mut requests = Requests::new();
    for item in items {
        count(&mut requests, "GetObject", 1);
        let manifest: Manifest = get_json(client, bucket, &item.manifest_key, "batch manifest").await?;
        let keys: Vec<String> = manifest.keys.into_iter().filter(|k| !skipped.contains(k.as_str())).collect();
        count(&mut requests, "DeleteObjects", keys.len().div_ceil(crate::delete::MAX_KEYS_PER_DELETE) as u64);
        let outcome = delete_many(client, &manifest.source_bucket, keys, 4).await;
        deleted += outcome.deleted as u64;
        failures.extend(
            outcome
                .failed
                .into_iter()
                .map(|f| SkippedFile { key: f.key, reason: format!("{}: {}", f.code, f.message) }),
        );
        failures.extend(
            outcome.batch_errors.into_iter().map(|err| SkippedFile { key: String::new(), reason: err.to_string() }),
        );
    }
    Ok((deleted, failures, requests))
}
