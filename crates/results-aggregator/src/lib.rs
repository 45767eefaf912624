//! The results-aggregator Lambda's handler: the CSV merge's last step. It
//! reads every batch's result, writes `report.json` (totals, outputs, every
//! skipped file and why, failed batches, timings, request counts), and when
//! asked concatenates the outputs into one `merged.csv` and deletes the
//! sources the report shows merged — only after the report is written and
//! only when no batch failed.

use s3mm_core::merge::{AggregateSummary, AggregateTask, MergeError, aggregate};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("results-aggregator input is not an aggregate task: {0}")]
    BadInput(String),
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl HandlerError {
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadInput(_) => "InvalidInput",
            Self::Merge(err) if err.is_transient() => "TransientS3Error",
            Self::Merge(_) => "AggregateFailed",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: err.error_type().to_owned(), error_message: err.to_string() }
    }
}

pub async fn handle(client: &aws_sdk_s3::Client, payload: &Value) -> Result<AggregateSummary, HandlerError> {
    let task: AggregateTask =
        serde_json::from_value(payload.clone()).map_err(|err| HandlerError::BadInput(err.to_string()))?;
    let summary = aggregate(client, &task).await?;
    tracing::info!(
        run_id = %summary.run_id,
        total_files = summary.total_files,
        merged_files = summary.merged_files,
        skipped_files = summary.skipped_files,
        rows = summary.rows,
        failed_batches = summary.failed_batches,
        "report written"
    );
    Ok(summary)
}
