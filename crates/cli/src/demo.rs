//! `s3mm demo`: the whole system on this machine with no AWS account. A
//! local S3 starts in-process; N realistic one-row CSVs are uploaded and, as
//! they arrive, moved by the mover's handler (events in SQS batches of 10);
//! then the three merge handlers merge the moved files at Map concurrency
//! 50. The summary gives the counts, the timings, the S3 requests by
//! operation and what the same run would cost on AWS.

use crate::pipeline::{self, MergeOptions, bar};
use crate::s3url::S3Url;
use futures::{StreamExt, stream};
use indicatif::MultiProgress;
use local_s3::{LocalS3, Options};
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use s3mm_core::cost::{self, Architecture, Estimate, MoverAssumptions};
use s3mm_core::keys::encode_event_key;
use s3mm_core::{Mover, MoverConfig};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const UPLOADS: &str = "s3mm-demo-uploads";
pub const ARCHIVE: &str = "s3mm-demo-archive";
const UPLOADS_IN_FLIGHT: usize = 64;
const INVOCATIONS_IN_FLIGHT: usize = 32;
const CITIES: &[&str] = &["São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba, PR", "Porto Alegre", "Recife"];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub files: usize,
    pub latency_ms: u64,
    pub keep: Option<PathBuf>,
    pub batch_size: usize,
}

#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub files: u64,
    pub moved: u64,
    pub rows: u64,
    pub outputs: u64,
    pub batches: u64,
    pub skipped_files: u64,
    pub failed_batches: u64,
    pub upload_and_move_seconds: f64,
    pub merge_seconds: f64,
    pub wall_seconds: f64,
    pub merge_files_per_second: f64,
    pub requests: BTreeMap<String, u64>,
    pub report: String,
    pub kept_in: Option<String>,
    pub aws_cost_move: Estimate,
    pub aws_cost_merge: Estimate,
}

/// A realistic one-row CSV: a quoted field with a comma now and then, and
/// non-ASCII text.
fn order_csv(i: usize) -> String {
    let city = CITIES[i % CITIES.len()];
    let city = if city.contains(',') { format!("\"{city}\"") } else { city.to_owned() };
    format!(
        "order_id,customer,city,amount,currency,created_at\n{i},Customer {i},{city},{}.{:02},BRL,2026-11-24T{:02}:{:02}:{:02}Z\n",
        (i * 37) % 5000,
        i % 100,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    )
}

/// Upload keys: mostly plain, every 997th with a space and non-ASCII, as
/// users name files.
fn upload_key(i: usize) -> String {
    if i.is_multiple_of(997) {
        format!("incoming/2026-11-24/pedido {i:07} São Paulo.csv")
    } else {
        format!("incoming/2026-11-24/order-{i:07}.csv")
    }
}

pub async fn run(options: &DemoOptions, progress: &MultiProgress) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    let temp;
    let root = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|err| anyhow::anyhow!("--keep {}: {err}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut server_options = Options::new(&root);
    server_options.latency = Duration::from_millis(options.latency_ms);
    let server = LocalS3::start_with(server_options).await?;
    for bucket in [UPLOADS, ARCHIVE] {
        // A kept directory may already hold the buckets from an earlier demo.
        if !server.keys(bucket).is_empty() || server.create_bucket(bucket).is_err() {
            anyhow::ensure!(
                server.keys(bucket).is_empty(),
                "--keep {}: bucket {bucket} is not empty; use a fresh directory",
                root.display()
            );
        }
    }
    let client =
        client_for_endpoint(&server.endpoint(), server.access_key(), server.secret_key(), &ClientSettings::default());

    // Uploads stream in; the mover handles them in SQS-sized batches as they land.
    let mover_config = MoverConfig {
        dest_bucket: ARCHIVE.into(),
        dest_prefix: "orders/".into(),
        source_prefix: "incoming/".into(),
        keep_source_prefix: false,
        source_bucket: Some(UPLOADS.into()),
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: 10,
        sdk_only: false,
    };
    let handler = mover::Handler::new(Mover::new(client.clone(), mover_config));
    let uploaded = bar(progress, options.files as u64, "upload");
    let moving = bar(progress, options.files as u64, "move");
    let move_started = Instant::now();
    let batches: Vec<(usize, usize)> = stream::iter(0..options.files)
        .map(|i| {
            let client = &client;
            let uploaded = &uploaded;
            async move {
                let key = upload_key(i);
                let body = order_csv(i).into_bytes();
                let size = body.len();
                let put = client.put_object().bucket(UPLOADS).key(&key).content_type("text/csv").body(body.into()).send().await;
                uploaded.inc(1);
                put.map(|out| (key, out.e_tag().unwrap_or_default().trim_matches('"').to_owned(), size))
            }
        })
        .buffer_unordered(UPLOADS_IN_FLIGHT)
        .chunks(10)
        .enumerate()
        .map(|(n, chunk)| {
            let handler = &handler;
            let moving = &moving;
            async move {
                let mut records = Vec::new();
                let mut upload_failures = 0;
                for (i, put) in chunk.into_iter().enumerate() {
                    match put {
                        Ok((key, etag, size)) => {
                            let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                "s3": {"bucket": {"name": UPLOADS}, "object": {"key": encode_event_key(&key), "size": size, "eTag": etag}}}]});
                            records.push(json!({"messageId": format!("{n}-{i}"), "eventSource": "aws:sqs", "body": body.to_string()}));
                        }
                        Err(_) => upload_failures += 1,
                    }
                }
                let count = records.len();
                let failed = match handler.handle(&json!({ "Records": records }), &format!("demo-{n}")).await {
                    Ok(response) => response.body["batchItemFailures"].as_array().map_or(0, Vec::len),
                    Err(_) => count,
                };
                moving.inc(count as u64);
                (count - failed, failed + upload_failures)
            }
        })
        .buffer_unordered(INVOCATIONS_IN_FLIGHT)
        .collect()
        .await;
    uploaded.finish_and_clear();
    moving.finish_and_clear();
    let moved: usize = batches.iter().map(|(ok, _)| ok).sum();
    let failed: usize = batches.iter().map(|(_, failed)| failed).sum();
    anyhow::ensure!(failed == 0, "{failed} uploads were not moved");
    let upload_and_move_seconds = move_started.elapsed().as_secs_f64();

    let merge_options = MergeOptions {
        batch_size: options.batch_size,
        map_concurrency: 50,
        fetch_concurrency: 64,
        list_concurrency: s3mm_core::config::DEFAULT_LIST_CONCURRENCY,
        target_bytes: None,
        compression: "none".into(),
        incremental: false,
        settle_seconds: None,
        takeover: None,
        single_output: false,
        delete_sources: false,
        run_id: "demo".into(),
    };
    let source = S3Url { bucket: ARCHIVE.into(), prefix: "orders/".into() };
    let dest = S3Url { bucket: ARCHIVE.into(), prefix: "merged/".into() };
    let merged = pipeline::merge(&client, &source, &dest, &merge_options, progress).await?;
    anyhow::ensure!(merged.batch_errors.is_empty(), "batches failed: {}", merged.batch_errors.join("; "));
    anyhow::ensure!(
        merged.summary.rows == options.files as u64,
        "{} rows merged from {} files",
        merged.summary.rows,
        options.files
    );

    let table = cost::prices();
    let measured = cost::measured();
    let aws_cost_move = cost::mover_month(
        &table,
        &MoverAssumptions {
            objects_per_day: options.files as f64,
            days: 1.0,
            delivery: cost::Delivery::Direct,
            objects_per_invocation: 1.0,
            ms_per_invocation: measured.mover.ms_for(1).ok_or_else(|| {
                anyhow::anyhow!(
                    "crates/core/data/measured-durations.json has no mover duration for one object per invocation"
                )
            })?,
            memory_mb: measured.mover.memory_mb,
            architecture: Architecture::Arm64,
        },
    );
    // Each batch at the csv-merger's measured duration on Lambda, not this
    // machine's wall time for the whole merge: the batches run side by side.
    let aws_cost_merge = cost::merge_run(
        &table,
        &measured.merge_assumptions(options.files as f64, options.batch_size as f64, Architecture::Arm64),
    );
    Ok(DemoSummary {
        files: options.files as u64,
        moved: moved as u64,
        rows: merged.summary.rows,
        outputs: merged.summary.outputs,
        batches: merged.generated.total_batches,
        skipped_files: merged.summary.skipped_files,
        failed_batches: merged.summary.failed_batches,
        upload_and_move_seconds,
        merge_seconds: merged.seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        merge_files_per_second: options.files as f64 / merged.seconds,
        requests: server.counters(),
        report: format!("s3://{ARCHIVE}/{}", merged.summary.report_key),
        kept_in: options.keep.as_ref().map(|d| d.display().to_string()),
        aws_cost_move,
        aws_cost_merge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_rows_are_one_row_csvs() {
        for i in [0, 3, 997] {
            let csv = order_csv(i);
            assert_eq!(csv.matches('\n').count(), 2, "{csv}");
        }
        assert!(order_csv(3).contains("\"Curitiba, PR\""));
        assert!(upload_key(997).contains(' '));
    }
}
