//! Step 3, the results-aggregator: every batch's result read back into
//! `report.json`, then, only when every batch succeeded, the single output
//! and the deletion of merged sources.

use super::batch::write_merged;
use super::documents::{
    AggregateSummary, AggregateTask, BatchItem, BatchResult, BatchTimings, FailedBatch, Manifest, OutputEntry, Report,
    RunInfo, SkippedFile, get_json, put_json,
};
use super::incremental;
use super::layout::{batches_key, merged_key, report_key, result_key, run_info_key};
use super::output::{Compression, Encoder};
use super::{MergeError, Requests, count, now_ms};
use crate::csv_merge::{CsvMerger, FileOutcome};
use crate::delete::delete_many;
use crate::error::GetError;
use crate::fetch::fetch_many;
use crate::upload::ObjectWriter;
use aws_sdk_s3::Client;
use futures::StreamExt;

/// Result documents and outputs read at once by the aggregator.
const AGGREGATE_READS_IN_FLIGHT: usize = 32;

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
        options: info.options.clone(),
        incremental: None,
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
        let compression = info.options.compression;
        let key = merged_key(run_prefix, compression);
        let written = concatenate(client, bucket, &key, info.header.as_deref(), compression, &report.outputs).await?;
        count(&mut requests, "GetObject", report.outputs.len() as u64);
        count(&mut requests, "PutObject", written);
        report.merged_key = Some(key);
    }

    // An incremental run moves its stream's watermark only once every
    // output is written; a failed one takes its outputs back, so the next
    // run merges those files again and each row lands in one output.
    if let Some(mut record) = info.incremental.clone() {
        let outcome = if complete {
            incremental::Outcome::Complete { now_ms: now_ms() }
        } else {
            incremental::Outcome::Failed { outputs: &report.outputs }
        };
        incremental::finish(client, bucket, &task.run_id, &mut record, outcome, &mut requests).await?;
        report.incremental = Some(record);
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
    compression: Compression,
    outputs: &[OutputEntry],
) -> Result<u64, MergeError> {
    let mut merger = match header {
        Some(header) => CsvMerger::with_header(header.as_bytes()),
        None => CsvMerger::new(),
    };
    let writer = ObjectWriter::new(client, bucket, key).content_type(compression.content_type());
    let keys: Vec<String> = outputs.iter().map(|o| o.key.clone()).collect();
    // Few in flight: each body is a whole batch output.
    let fetched = fetch_many(client, bucket, keys, 4);
    let written = write_merged(fetched, &mut merger, Encoder::new(compression), writer, |merger, file| {
        let body = file.result?;
        let csv = compression.decode(&body).map_err(|err| MergeError::BadDocument {
            bucket: bucket.to_owned(),
            key: file.key.clone(),
            what: "batch output",
            reason: format!("not a valid gzip stream: {err}"),
        })?;
        match merger.push(&csv) {
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
