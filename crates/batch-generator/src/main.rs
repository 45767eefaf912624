use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use s3mm_core::client::{ClientSettings, load_client};
use s3mm_core::{LogFormat, MergeConfig};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
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
