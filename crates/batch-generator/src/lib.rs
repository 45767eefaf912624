//! The batch-generator Lambda's handler: the CSV merge's first step. It
//! validates the execution input (errors name the field), lists the source
//! prefix once with many calls in flight over disjoint key ranges, writes one manifest per batch and `_manifests/batches.json`
//! for the Distributed Map's ItemReader, and returns only counts and that
//! key, so its output stays far below Step Functions' 256 KB payload limit
//! however many files there are.

use s3mm_core::MergeConfig;
use s3mm_core::merge::{GenerateOutput, MergeError, MergeRequest, generate_batches};
use serde_json::Value;

/// Allocations of 128 KiB and more (page bodies, ranges' key lists,
/// manifests) are mapped and unmapped on their own instead of being carved
/// from the heap. glibc otherwise raises that threshold to the largest
/// block freed so far, the listing's ~300 KB blocks come from the heap, and
/// the holes they leave among a million small keys stay resident: in the
/// listing bench peak RSS at 1M keys was 1.45-1.5x the RSS at 100k, and
/// with the threshold held 1.1-1.3x, for the same keys held. Call it first
/// thing in `main`.
pub fn keep_large_blocks_off_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists, and a value it refuses leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HandlerError(#[from] pub MergeError);

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: err.0.error_type().to_owned(), error_message: err.to_string() }
    }
}

/// Runs the step. `config` comes from the environment (`BATCH_SIZE` is
/// the default batch size, `LIST_CONCURRENCY` the listing's calls in
/// flight); `request_id` names the run when neither `run_id` nor
/// `execution_name` is in the input (a direct invocation).
pub async fn handle(
    client: &aws_sdk_s3::Client,
    payload: &Value,
    config: &MergeConfig,
    request_id: &str,
) -> Result<GenerateOutput, HandlerError> {
    let request = MergeRequest::from_input(payload, config.batch_size, request_id)?;
    tracing::info!(run_id = %request.run_id, bucket = %request.source_bucket, prefix = %request.source_prefix, batch_size = request.batch_size, "listing");
    // Boxed: the step's future (listing, manifests, the incremental lock,
    // the SDK's own futures) nests deeper than rustc lays out by default.
    let output = Box::pin(generate_batches(client, &request, config.list_concurrency)).await?;
    tracing::info!(run_id = %output.run_id, total_files = output.total_files, total_batches = output.total_batches, "batches written");
    Ok(output)
}
