//! The mover binary killed with SIGKILL in the middle of a batch, then the
//! same SQS batch redelivered to a fresh process, as SQS does after the
//! visibility timeout: nothing lost, nothing duplicated. Runs the built
//! binary behind `cargo lambda watch --only-lambda-apis` (needs cargo-lambda
//! on PATH; scripts/test.sh runs it).

mod common;

use common::{Killed, cargo_lambda, free_port, target_binary};
use local_s3::{LocalS3, Options};
use s3mm_core::keys::encode_event_key;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OBJECTS: usize = 100;

fn start_mover(port: u16, server: &LocalS3) -> Killed {
    let child = Command::new(target_binary("mover"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt/mover"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "mover")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_ENDPOINT_URL", server.endpoint())
        // As template.yaml declares it for a deployed stack: empty is unset.
        .env("AWS_ENDPOINT_URL_S3", "")
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .env("AWS_REGION", "us-east-1")
        .env("DEST_BUCKET", "dst")
        .env("DEST_PREFIX", "out/")
        .env("SOURCE_PREFIX", "in/")
        .env("FETCH_CONCURRENCY", "4")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mover starts");
    Killed(child)
}

/// Polls `ready` until it holds, failing the test after `limit`.
async fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs cargo-lambda on PATH; scripts/test.sh runs it"]
async fn a_mover_killed_mid_batch_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = Options::new(dir.path());
    // Slow enough that the kill lands in the middle of the batch.
    options.latency = Duration::from_millis(30);
    let server = LocalS3::start_with(options).await.expect("local-s3");
    server.create_bucket("src").expect("bucket");
    server.create_bucket("dst").expect("bucket");
    let mut messages = Vec::new();
    for i in 0..OBJECTS {
        let key = format!("in/file {i:03}.csv");
        let etag = server.put_object("src", &key, format!("id\n{i}\n").as_bytes()).expect("put");
        let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "src"}, "object": {"key": encode_event_key(&key), "size": 5, "eTag": etag.trim_matches('"')}}}]});
        messages.push(json!({"messageId": format!("m{i}"), "eventSource": "aws:sqs", "body": body.to_string()}));
    }
    let event_file = dir.path().join("event.json");
    std::fs::write(&event_file, json!({ "Records": messages }).to_string()).expect("event file");
    let event_file = event_file.to_str().expect("utf-8").to_owned();

    let port = free_port();
    let _emulator = Killed(
        cargo_lambda()
            .args(["watch", "--only-lambda-apis", "--ignore-changes", "-A", "127.0.0.1", "-P", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch"),
    );
    wait_until("the emulator", Duration::from_secs(60), || TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    let invoke = || {
        let mut command = cargo_lambda();
        command.args(["invoke", "mover", "-A", "127.0.0.1", "-P", &port.to_string(), "--data-file", &event_file]);
        command.args(["--output-format", "json"]);
        command
    };

    // First delivery: killed part-way through.
    let mut first = start_mover(port, &server);
    let _first_invoke = Killed(invoke().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("invoke"));
    let deletes = || server.counters().get("DeleteObject").copied().unwrap_or(0);
    wait_until("the first deletes", Duration::from_secs(120), || deletes() >= 10).await;
    first.0.kill().expect("SIGKILL");
    let _ = first.0.wait();
    let moved_before_kill = deletes();
    assert!(moved_before_kill < OBJECTS as u64, "the kill must land mid-batch ({moved_before_kill} moved)");

    // Redelivery to a fresh process.
    let _second = start_mover(port, &server);
    let output = invoke().output().expect("invoke again");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON answer");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

    assert!(server.keys("src").is_empty(), "every source moved");
    let expected: BTreeSet<String> = (0..OBJECTS).map(|i| format!("out/file {i:03}.csv")).collect();
    let landed: BTreeSet<String> = server.keys("dst").into_iter().collect();
    assert_eq!(landed, expected, "each object once, at its destination");
    for i in 0..OBJECTS {
        let object = server.object("dst", &format!("out/file {i:03}.csv")).expect("landed");
        assert_eq!(object.data.as_ref(), format!("id\n{i}\n").as_bytes());
    }
}
