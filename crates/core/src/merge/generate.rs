//! Step 1, the batch-generator: lists the source and writes one manifest per
//! batch while the listing goes on.

use super::documents::{BatchItem, GenerateOutput, Manifest, RunInfo, put_json};
use super::layout::{batches_key, manifest_key, output_key, run_info_key};
use super::request::MergeRequest;
use super::{MergeError, Requests, count, now_ms};
use crate::csv_merge::CsvMerger;
use crate::error::GetError;
use crate::fetch::get_object;
use crate::list::{ListOptions, list_objects};
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt, stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Manifests written at once by the batch generator.
const MANIFEST_WRITES_IN_FLIGHT: usize = 16;
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
