use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use s3mm_core::client::{ClientSettings, load_client};
use s3mm_core::{LogFormat, MergeConfig};
use serde_json::Value;

// One thread: Lambda gives a function at most one vCPU's worth of time up
// to 1,769 MB (7% of one at 128 MB), and a multi-threaded runtime spends
// that share on waking its workers (docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    batch_generator::keep_large_blocks_off_the_heap();
    s3mm_core::logging::init(LogFormat::from_env()?);
    let config = MergeConfig::from_env()?;
    let client = load_client(&ClientSettings::from_env()).await;
    let (client, config) = (&client, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        batch_generator::handle(client, &event.payload, config, &event.context.request_id)
            .await
            .map_err(Diagnostic::from)
    }))
    .await
}
