//! The Lambda runtime's own CPU per invocation and nothing else: the
//! mover's set-up (a one-thread Tokio runtime, mimalloc, s3mm's logging)
//! around a handler that answers an SQS batch without moving anything.
//! `bench/lambda_share.py` measures it beside the mover, so that the
//! mover's CPU per single-object invocation reads as this floor plus the
//! work of the move.
//!
//! `FLOOR_WAITS=N` and `FLOOR_WAIT_MS=M` make the handler wait N times M
//! ms before it answers, as a single-object move waits on its CopyObject
//! and its DeleteObject: a process that wakes after an idle wait runs on
//! cold caches, and that cost is the runtime's, not the move's.

use lambda_runtime::{LambdaEvent, service_fn};
use s3mm_core::LogFormat;
use serde_json::{Value, json};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_u64(name: &str) -> Result<u64, lambda_runtime::Error> {
    match std::env::var(name) {
        Ok(value) => value.parse().map_err(|err| format!("{name}={value:?}: {err}").into()),
        Err(_) => Ok(0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    s3mm_core::logging::init(LogFormat::from_env()?);
    let waits = env_u64("FLOOR_WAITS")?;
    let wait = Duration::from_millis(env_u64("FLOOR_WAIT_MS")?);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        for _ in 0..waits {
            tokio::time::sleep(wait).await;
        }
        Ok::<Value, lambda_runtime::Error>(json!({"batchItemFailures": []}))
    }))
    .await
}
