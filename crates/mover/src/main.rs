use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mover::{Handler, metrics};
use s3mm_core::client::{ClientSettings, load_client};
use s3mm_core::{LogFormat, Mover, MoverConfig};
use serde_json::Value;

// glibc's malloc spent a sixth of the mover's CPU at batch 100 once its
// copies and deletes went direct (malloc_consolidate, unlink_chunk);
// mimalloc, as in the csv-merger (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: Lambda gives a function at most one vCPU's worth of time up
// to 1,769 MB (7% of one at 128 MB), and a multi-threaded runtime spends
// that share on waking its workers (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    s3mm_core::logging::init(LogFormat::from_env()?);
    let config = MoverConfig::from_env()?;
    let client = load_client(&ClientSettings::from_env()).await;
    let handler = Handler::new(Mover::new(client, config));
    let collector = metrics::init();
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request_id = event.context.request_id.clone();
        let result = handler.handle(&event.payload, &request_id).await;
        if let Some(collector) = collector {
            let tally = result.as_ref().map_or_else(mover::HandlerError::tally, |response| response.tally);
            metrics::emit(collector, &tally, &request_id);
        }
        result.map(|response| response.body).map_err(Diagnostic::from)
    }))
    .await
}
