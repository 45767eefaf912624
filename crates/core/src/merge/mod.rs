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

mod aggregate;
mod batch;
mod documents;
mod generate;
mod incremental;
mod layout;
mod output;
mod request;

pub use aggregate::aggregate;
pub use batch::merge_batch;
pub use documents::{
    AggregateSummary, AggregateTask, BatchItem, BatchResult, BatchSummary, BatchTimings, FailedBatch, GenerateOutput,
    Manifest, MergeTask, OutputEntry, Report, RunInfo, RunOptions, SkippedFile,
};
pub use generate::generate_batches;
pub use incremental::{DEFAULT_SETTLE_SECONDS, IncrementalRun, LOCK_LEASE_MS, StreamState, Window, state_key};
pub use layout::{
    batches_key, manifest_key, map_results_prefix, merged_key, output_key, report_key, result_key, run_info_key,
};
pub use output::Compression;
pub use request::{DEFAULT_SUFFIX, MergeRequest};

use crate::error::{GetError, ListError, PutError};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

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
    #[error(
        "incremental run {run_id} of this stream is still running (started {}, lock s3://{bucket}/{key} held \
         until {}); this run was refused. If that execution is no longer running, start this one with \
         \"takeover\": \"{run_id}\"",
        crate::logging::utc(*started_at_ms), crate::logging::utc(*expires_at_ms)
    )]
    RunInProgress { bucket: String, key: String, run_id: String, started_at_ms: u64, expires_at_ms: u64 },
    #[error("run {run_id} no longer holds the incremental lock s3://{bucket}/{key}: another run took it over")]
    LockLost { bucket: String, key: String, run_id: String },
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
            Self::RunInProgress { .. } => "RunInProgress",
            err if err.is_transient() => "TransientS3Error",
            _ => "MergeFailed",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// S3 requests made by a step, by operation (SDK retries not included).
pub type Requests = BTreeMap<String, u64>;

fn count(requests: &mut Requests, operation: &str, n: u64) {
    if n > 0 {
        *requests.entry(operation.to_owned()).or_default() += n;
    }
}
