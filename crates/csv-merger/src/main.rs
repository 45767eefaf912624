use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use s3mm_core::client::{ClientSettings, load_client};
use s3mm_core::{LogFormat, MergeConfig};
use serde_json::Value;

// Measured at the Lambda share (bench/lambda_share.py): a 1,000-file batch
// spends a quarter less CPU with mimalloc than with glibc's malloc, whose
// frees of the SDK's many small per-request allocations consolidate and
// unlink chunks (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: Lambda gives a function at most one vCPU's worth of time up
// to 1,769 MB (7% of one at 128 MB), and a multi-threaded runtime spends
// that share on waking its workers (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    s3mm_core::logging::init(LogFormat::from_env()?);
    let config = MergeConfig::from_env()?;
    let handler = &csv_merger::Handler::new(load_client(&ClientSettings::from_env()).await, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(&event.payload).await.map_err(Diagnostic::from)
    }))
    .await
}
