//! The merge and the move as the deployed system runs them, driven from
//! this machine: the merge goes through the three Lambda handlers with the
//! state machine's Map concurrency and Retry policy, the move through
//! s3mm-core's safe move over a listing.

use crate::s3url::S3Url;
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use s3mm_core::merge::{AggregateSummary, BatchItem, BatchSummary, GenerateOutput};
use s3mm_core::{ListOptions, MergeConfig, MoveOutcome, MoveRequest, Mover, MoverConfig, list_objects};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// The state machine's Retry on TransientS3Error: up to 6 attempts.
const BATCH_ATTEMPTS: u32 = 6;

pub fn bar(progress: &MultiProgress, len: u64, what: &str) -> ProgressBar {
    let bar = progress.add(ProgressBar::new(len));
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar
}

pub fn spinner(progress: &MultiProgress, what: &str) -> ProgressBar {
    let bar = progress.add(ProgressBar::new_spinner());
    let style = ProgressStyle::with_template("{prefix:>9} {spinner} {pos} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub batch_size: usize,
    pub map_concurrency: usize,
    pub fetch_concurrency: usize,
    pub list_concurrency: usize,
    /// Batches also cut by summed file sizes.
    pub target_bytes: Option<u64>,
    /// "none" or "gzip".
    pub compression: String,
    pub incremental: bool,
    pub settle_seconds: Option<u64>,
    pub takeover: Option<String>,
    pub single_output: bool,
    pub delete_sources: bool,
    pub run_id: String,
}

#[derive(Debug, Serialize)]
pub struct MergeOutcome {
    pub generated: GenerateOutput,
    pub summary: AggregateSummary,
    pub seconds: f64,
    pub batch_errors: Vec<String>,
}

/// Runs a whole merge: batch-generator, csv-merger for every batch at
/// `map_concurrency`, results-aggregator. Writes exactly what a Step
/// Functions run writes.
pub async fn merge(
    client: &Client,
    source: &S3Url,
    dest: &S3Url,
    options: &MergeOptions,
    progress: &MultiProgress,
) -> anyhow::Result<MergeOutcome> {
    let started = Instant::now();
    let input = json!({
        "source_bucket": source.bucket, "source_prefix": source.prefix,
        "dest_bucket": dest.bucket, "dest_prefix": dest.prefix,
        "batch_size": options.batch_size, "run_id": options.run_id,
        "single_output": options.single_output, "delete_sources": options.delete_sources,
        "target_bytes": options.target_bytes, "compression": options.compression,
        "incremental": options.incremental, "settle_seconds": options.settle_seconds, "takeover": options.takeover,
    });
    let listing = spinner(progress, "list");
    listing.set_message(format!("listing {source}"));
    let config = MergeConfig {
        batch_size: options.batch_size,
        fetch_concurrency: options.fetch_concurrency,
        list_concurrency: options.list_concurrency,
        sdk_only: false,
    };
    let generated = batch_generator::handle(client, &input, &config, &options.run_id).await;
    listing.finish_and_clear();
    let generated = generated?;
    let body = s3mm_core::fetch::get_object(client, &generated.dest_bucket, &generated.batches_key).await?;
    let items: Vec<BatchItem> = serde_json::from_slice(&body)?;

    let merging = bar(progress, items.len() as u64, "merge");
    // One for the run, as one warm csv-merger keeps one across its batches.
    let merger = &csv_merger::Handler::new(client.clone(), &config);
    let tasks = items.into_iter().map(|batch| {
        json!({"run_id": generated.run_id, "source_bucket": generated.source_bucket,
               "dest_bucket": generated.dest_bucket, "run_prefix": generated.run_prefix, "batch": batch})
    });
    let results: Vec<Result<BatchSummary, String>> = stream::iter(tasks)
        .map(|task| {
            let merging = merging.clone();
            async move {
                let result = merge_with_retry(merger, &task).await;
                merging.inc(1);
                result
            }
        })
        .buffer_unordered(options.map_concurrency.max(1))
        .collect()
        .await;
    merging.finish_and_clear();
    let batch_errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();

    let report = spinner(progress, "report");
    let task = json!({"run_id": generated.run_id, "source_bucket": generated.source_bucket,
        "dest_bucket": generated.dest_bucket, "run_prefix": generated.run_prefix,
        "single_output": options.single_output, "delete_sources": options.delete_sources});
    let summary = results_aggregator::handle(client, &task).await;
    report.finish_and_clear();
    Ok(MergeOutcome { generated, summary: summary?, seconds: started.elapsed().as_secs_f64(), batch_errors })
}

/// One Map iteration with the state machine's Retry: transient S3 errors
/// are retried with exponential backoff and full jitter.
async fn merge_with_retry(merger: &csv_merger::Handler, task: &serde_json::Value) -> Result<BatchSummary, String> {
    let mut attempt = 1;
    loop {
        match merger.handle(task).await {
            Ok(summary) => return Ok(summary),
            Err(err) if err.error_type() == "TransientS3Error" && attempt < BATCH_ATTEMPTS => {
                let ceiling = 1000u64 << attempt.min(5);
                let jitter =
                    u64::from(std::process::id()).wrapping_mul(2_654_435_761).wrapping_add(attempt.into()) % ceiling;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                attempt += 1;
            }
            Err(err) => return Err(format!("batch {}: {err}", task["batch"]["batch_id"])),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct MoveTally {
    pub listed: u64,
    pub moved: u64,
    pub copied: u64,
    pub already_moved: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub failures: Vec<String>,
    pub seconds: f64,
}

/// Moves every object under `source` with the mover's rules.
pub async fn sweep(
    client: &Client,
    source: &S3Url,
    dest: &S3Url,
    copy_only: bool,
    concurrency: usize,
    progress: &MultiProgress,
) -> anyhow::Result<MoveTally> {
    let started = Instant::now();
    let config = MoverConfig {
        dest_bucket: dest.bucket.clone(),
        dest_prefix: dest.prefix.clone(),
        source_prefix: source.prefix.clone(),
        keep_source_prefix: false,
        source_bucket: Some(source.bucket.clone()),
        delete_source: !copy_only,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: concurrency,
        sdk_only: false,
    };
    let mover = Mover::new(client.clone(), config);
    let exclude = (source.bucket == dest.bucket && !dest.prefix.is_empty()).then(|| dest.prefix.clone());
    let options = ListOptions { exclude_prefix: exclude, ..ListOptions::default() };
    let moving = spinner(progress, "move");
    let mut tally = MoveTally::default();
    let mut outcomes = list_objects(client, &source.bucket, &source.prefix, options)
        .map_ok(|object| {
            let mover = &mover;
            async move {
                let request = MoveRequest {
                    bucket: source.bucket.clone(),
                    key: object.key,
                    etag: object.etag,
                    size: Some(object.size),
                };
                let result = mover.move_object(&request).await;
                Ok::<_, s3mm_core::ListError>((request, result))
            }
        })
        .try_buffer_unordered(concurrency.max(1));
    while let Some(item) = outcomes.next().await {
        let (request, result) = item?;
        tally.listed += 1;
        moving.inc(1);
        match result {
            Ok(MoveOutcome::Moved { bytes, .. }) => {
                tally.moved += 1;
                tally.bytes += bytes.unwrap_or(0);
            }
            Ok(MoveOutcome::Copied { bytes, .. }) => {
                tally.copied += 1;
                tally.bytes += bytes.unwrap_or(0);
            }
            Ok(MoveOutcome::AlreadyMoved { .. }) => tally.already_moved += 1,
            Ok(MoveOutcome::Skipped { .. }) => tally.skipped += 1,
            Ok(MoveOutcome::SourceMissing { .. }) => {
                tally.failed += 1;
                tally.failures.push(format!(
                    "s3://{}/{}: listed, then gone, and not at the destination",
                    request.bucket, request.key
                ));
            }
            Err(err) => {
                tally.failed += 1;
                tally.failures.push(err.to_string());
            }
        }
    }
    moving.finish_and_clear();
    tally.seconds = started.elapsed().as_secs_f64();
    Ok(tally)
}
