//! The csv-merger Lambda's handler: one Distributed Map item in, one merged
//! CSV out. It reads the batch's manifest, fetches its files with
//! `FETCH_CONCURRENCY` requests in flight, writes the rows in manifest order
//! (whatever order the fetches finish in) under one header, records
//! `_results/batch-NNNNN.json`, and returns a summary of a few fields. A
//! retried batch overwrites the same keys with the same bytes.

use aws_sdk_s3::Client;
use s3mm_core::MergeConfig;
use s3mm_core::direct::Direct;
use s3mm_core::merge::{BatchSummary, MergeError, MergeTask, merge_batch};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("csv-merger input is not a batch task: {0}")]
    BadInput(String),
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl HandlerError {
    /// `TransientS3Error` is what the state machine's Retry names.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadInput(_) => "InvalidInput",
            Self::Merge(err) => err.error_type(),
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: err.error_type().to_owned(), error_message: err.to_string() }
    }
}

/// What the function keeps between invocations: the client, and the direct
/// path with each bucket's route, found by the first batch that reads it.
#[derive(Debug, Clone)]
pub struct Handler {
    client: Client,
    direct: Direct,
    concurrency: usize,
}

impl Handler {
    pub fn new(client: Client, config: &MergeConfig) -> Self {
        let direct = Direct::configured(&client, config.sdk_only);
        Self { client, direct, concurrency: config.fetch_concurrency }
    }

    pub async fn handle(&self, payload: &Value) -> Result<BatchSummary, HandlerError> {
        // Boxed: the merge's future is deep enough that the runtime's
        // future around it would pass the compiler's layout depth limit.
        Box::pin(handle(&self.client, &self.direct, payload, self.concurrency)).await
    }
}

async fn handle(
    client: &Client,
    direct: &Direct,
    payload: &Value,
    concurrency: usize,
) -> Result<BatchSummary, HandlerError> {
    let task: MergeTask =
        serde_json::from_value(payload.clone()).map_err(|err| HandlerError::BadInput(err.to_string()))?;
    let summary = merge_batch(client, direct, &task, concurrency).await?;
    tracing::info!(
        run_id = %task.run_id,
        batch_id = summary.batch_id,
        files = summary.files,
        rows = summary.rows,
        bytes = summary.bytes,
        skipped = summary.skipped,
        ms = summary.ms,
        "batch merged"
    );
    Ok(summary)
}
