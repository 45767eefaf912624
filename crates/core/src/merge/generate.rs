//! Step 1, the batch-generator: lists the source and writes one manifest per
//! batch while the listing goes on.

use super::documents::{BatchItem, GenerateOutput, Manifest, RunInfo, put_compact_json, put_json};
use super::incremental::{self, IncrementalRun};
use super::layout::{batches_key, manifest_key, map_results_prefix, output_key, run_info_key};
use super::request::MergeRequest;
use super::{MergeError, Requests, count, now_ms};
use crate::csv_merge::CsvMerger;
use crate::error::GetError;
use crate::fetch::get_object;
use crate::list::{ListOptions, ObjectSummary, list_objects_parallel};
use aws_sdk_s3::Client;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::{JoinError, JoinSet};

/// Manifests written at once by the batch generator.
const MANIFEST_WRITES_IN_FLIGHT: usize = 32;
/// Files tried when looking for the run's header.
const HEADER_PROBES: usize = 20;

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

/// Step 1: lists the source prefix and writes the manifests, with up to
/// `list_concurrency` ListObjectsV2 calls in flight (1 lists serially). An
/// incremental run first takes its stream's lock and merges only its
/// window; if it then fails, it gives the lock back.
pub async fn generate_batches(
    client: &Client,
    request: &MergeRequest,
    list_concurrency: usize,
) -> Result<GenerateOutput, MergeError> {
    let started_at_ms = now_ms();
    let mut requests = Requests::new();
    if !request.incremental {
        return list_and_write(client, request, list_concurrency, None, started_at_ms, requests).await;
    }
    let mut record = incremental::begin(client, request, started_at_ms, &mut requests).await?;
    match list_and_write(client, request, list_concurrency, Some(record.clone()), started_at_ms, requests).await {
        Ok(output) => Ok(output),
        Err(err) => {
            // Best effort: a run that cannot list leaves the next one free
            // to start; if this fails too, the lock expires on its own.
            let mut ignored = Requests::new();
            let failed = incremental::Outcome::Failed { outputs: &[] };
            let _ =
                incremental::finish(client, &request.dest_bucket, &request.run_id, &mut record, failed, &mut ignored)
                    .await;
            Err(err)
        }
    }
}

async fn list_and_write(
    client: &Client,
    request: &MergeRequest,
    list_concurrency: usize,
    mut incremental: Option<IncrementalRun>,
    started_at_ms: u64,
    mut requests: Requests,
) -> Result<GenerateOutput, MergeError> {
    let run_prefix = request.run_prefix();
    let pages = Arc::new(AtomicU64::new(0));
    let options = ListOptions {
        suffix: Some(request.suffix.clone()).filter(|s| !s.is_empty()),
        exclude_prefix: request.excluded_prefix(),
        pages: Some(pages.clone()),
        without_etags: true,
        // Only an incremental run places files by their dates.
        without_last_modified: !request.incremental,
        ..ListOptions::default()
    };
    let mut listed =
        list_objects_parallel(client, &request.source_bucket, &request.source_prefix, options, list_concurrency);
    let run_options = request.options();
    let mut header: Option<Option<String>> = None;
    let mut items = Vec::new();
    let mut writes = JoinSet::new();
    let mut total_files = 0u64;
    let mut batcher = Batcher::new(request.batch_size, request.target_bytes);
    let mut ended = false;
    while !ended {
        let batch = match listed.next().await.transpose()? {
            Some(object) => {
                if let (Some(record), Some(modified)) = (&mut incremental, object.last_modified_ms) {
                    let place = record.window.place(modified);
                    match place {
                        std::cmp::Ordering::Less => record.earlier_files += 1,
                        std::cmp::Ordering::Greater => record.deferred_files += 1,
                        std::cmp::Ordering::Equal => {}
                    }
                    if place.is_ne() {
                        continue;
                    }
                }
                batcher.push(object)
            }
            None => {
                ended = true;
                batcher.take()
            }
        };
        let Some((keys, source_bytes)) = batch else { continue };
        if header.is_none() {
            header = Some(probe_header(client, &request.source_bucket, &keys, &mut requests).await?);
        }
        let batch_id = items.len() as u64;
        total_files += keys.len() as u64;
        let item = BatchItem {
            batch_id,
            manifest_key: manifest_key(&run_prefix, batch_id),
            output_key: output_key(&run_prefix, batch_id, request.compression),
            file_count: keys.len(),
            source_bytes,
        };
        let manifest = Manifest {
            run_id: request.run_id.clone(),
            batch_id,
            source_bucket: request.source_bucket.clone(),
            header: header.clone().flatten(),
            keys,
            options: run_options.clone(),
        };
        // Manifests go out while the listing goes on, so memory holds at
        // most the manifests in flight, whatever the number of files.
        let (client, bucket, key) = (client.clone(), request.dest_bucket.clone(), item.manifest_key.clone());
        writes.spawn(async move { put_compact_json(&client, &bucket, &key, &manifest).await });
        count(&mut requests, "PutObject", 1);
        items.push(item);
        while writes.len() >= MANIFEST_WRITES_IN_FLIGHT {
            joined(writes.join_next().await)?;
        }
    }
    while !writes.is_empty() {
        joined(writes.join_next().await)?;
    }
    // An incremental run with nothing new is a run like any other, with no
    // batches; only a one-off merge of an empty prefix is a mistake.
    if items.is_empty() && incremental.is_none() {
        return Err(MergeError::EmptyPrefix {
            bucket: request.source_bucket.clone(),
            prefix: request.source_prefix.clone(),
            suffix: request.suffix.clone(),
        });
    }
    count(&mut requests, "ListObjectsV2", pages.load(Ordering::Relaxed));
    count(&mut requests, "PutObject", 2);
    let key = batches_key(&run_prefix);
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
        options: run_options.clone(),
        incremental,
        started_at_ms,
        finished_at_ms: now_ms(),
        requests,
    };
    // Both are read only after this step returns (the Map reads
    // batches.json, the aggregate step run.json), so they go out together.
    let info_key = run_info_key(&run_prefix);
    futures::try_join!(
        put_compact_json(client, &request.dest_bucket, &key, &items),
        put_json(client, &request.dest_bucket, &info_key, &info),
    )?;
    Ok(GenerateOutput {
        run_id: request.run_id.clone(),
        source_bucket: request.source_bucket.clone(),
        source_prefix: request.source_prefix.clone(),
        dest_bucket: request.dest_bucket.clone(),
        dest_prefix: request.dest_prefix.clone(),
        map_results_prefix: map_results_prefix(&run_prefix),
        run_prefix,
        total_files,
        total_batches,
        batches_key: key,
        batch_size: request.batch_size,
        single_output: request.single_output,
        delete_sources: request.delete_sources,
        options: run_options,
    })
}

/// Cuts the listing into batches: at `batch_size` files, and, with a
/// target, before the file that would take the batch's summed sizes past
/// it (a file larger than the target is a batch of its own).
struct Batcher {
    batch_size: usize,
    target_bytes: Option<u64>,
    keys: Vec<String>,
    bytes: u64,
}

impl Batcher {
    fn new(batch_size: usize, target_bytes: Option<u64>) -> Self {
        Self { batch_size: batch_size.max(1), target_bytes, keys: Vec::new(), bytes: 0 }
    }

    /// Takes the next listed file; returns a batch when one is complete.
    fn push(&mut self, object: ObjectSummary) -> Option<(Vec<String>, u64)> {
        let over_target = self.target_bytes.is_some_and(|target| self.bytes.saturating_add(object.size) > target);
        let full = if !self.keys.is_empty() && over_target { self.take() } else { None };
        self.bytes += object.size;
        self.keys.push(object.key);
        full.or_else(|| (self.keys.len() >= self.batch_size).then(|| self.take()).flatten())
    }

    /// The batch so far; at the end of the listing, the last one.
    fn take(&mut self) -> Option<(Vec<String>, u64)> {
        if self.keys.is_empty() {
            return None;
        }
        let keys = std::mem::replace(&mut self.keys, Vec::with_capacity(self.batch_size.min(10_000)));
        Some((keys, std::mem::take(&mut self.bytes)))
    }
}

/// A manifest write's outcome; a write task that panicked is a bug here,
/// not a failure of S3, so it is passed on as one.
fn joined(outcome: Option<Result<Result<(), MergeError>, JoinError>>) -> Result<(), MergeError> {
    match outcome {
        None => Ok(()),
        Some(Ok(result)) => result,
        Some(Err(err)) => std::panic::resume_unwind(err.into_panic()),
    }
}
