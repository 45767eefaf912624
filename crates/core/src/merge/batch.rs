//! Step 2, the csv-merger: one manifest's files fetched concurrently and
//! written as one CSV in manifest order, then the batch's result document.

use super::documents::{BatchResult, BatchSummary, Manifest, MergeTask, SkippedFile, get_json, put_json};
use super::layout::result_key;
use super::output::Encoder;
use super::{MergeError, Requests, count, now_ms};
use crate::csv_merge::{CsvMerger, FileOutcome};
use crate::direct::Direct;
use crate::error::GetError;
use crate::fetch::{Fetched, fetch_many_with};
use crate::upload::{ObjectWriter, Written};
use aws_sdk_s3::Client;
use futures::{Stream, StreamExt};
use std::time::Instant;

const ENCODE_PIECE: usize = 256 * 1024;

/// Step 2: merges one batch into one CSV and records what it did. The
/// source files' GETs go on `direct` first; a function keeps one `Direct`
/// for its life, so each bucket's route is found once, not per batch.
pub async fn merge_batch(
    client: &Client,
    direct: &Direct,
    task: &MergeTask,
    concurrency: usize,
) -> Result<BatchSummary, MergeError> {
    let started = Instant::now();
    let started_at_ms = now_ms();
    let mut requests = Requests::new();
    count(&mut requests, "GetObject", 1);
    let manifest: Manifest = get_json(client, &task.dest_bucket, &task.batch.manifest_key, "batch manifest").await?;
    let mut merger = match &manifest.header {
        Some(header) => CsvMerger::with_header(header.as_bytes()),
        None => CsvMerger::new(),
    };
    let compression = manifest.options.compression;
    let writer =
        ObjectWriter::new(client, &task.dest_bucket, &task.batch.output_key).content_type(compression.content_type());
    let files = manifest.keys.len();
    let (mut merged_files, mut empty_files, mut header_only_files, mut odd_rows) = (0, 0, 0, 0);
    let mut skipped_files = Vec::new();
    count(&mut requests, "GetObject", files as u64);
    let fetched = fetch_many_with(direct.clone(), client, &manifest.source_bucket, manifest.keys, concurrency);
    let written = write_merged(fetched, &mut merger, Encoder::new(compression), writer, |merger, file| {
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
        csv_bytes: merger.bytes(),
        skipped_files,
        started_at_ms,
        finished_at_ms: now_ms(),
        requests,
    };
    put_json(client, &task.dest_bucket, &result_key(&task.run_prefix, task.batch.batch_id), &result).await?;
    Ok(summary)
}

/// Feeds every fetched file to `on_file` (which pushes it into `merger`)
/// and the merged bytes, encoded, to `writer` a part at a time, then
/// completes the object. On any error the upload is aborted: nothing
/// partial ever appears under the output's key.
pub(super) async fn write_merged<S, F>(
    mut fetched: S,
    merger: &mut CsvMerger,
    mut encoder: Encoder,
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
            // Compressing in pieces of this size keeps gzip's window full
            // without holding a whole part of CSV beside its compressed form.
            if merger.buffered() >= ENCODE_PIECE {
                encoder.push(merger.take());
            }
            if encoder.ready() >= crate::upload::DEFAULT_PART_SIZE {
                writer.write(&encoder.take()).await?;
            }
        }
        encoder.push(merger.take());
        writer.write(&encoder.finish()).await?;
        Ok(())
    }
    .await;
    if let Err(err) = outcome {
        writer.abort().await;
        return Err(err);
    }
    Ok(writer.finish().await?)
}
