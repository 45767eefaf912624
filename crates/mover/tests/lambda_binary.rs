//! The built `mover` binary under cargo-lambda's runtime emulator, invoked
//! with the sample events in `events/`, against a standalone local-s3
//! process. Needs `cargo-lambda` on PATH (scripts/test.sh installs it), so
//! it is marked ignored for a bare `cargo test` and run by the test script.

mod common;

use common::{Killed, cargo_lambda, free_port, start_local_s3};
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The object every sample event in `events/` announces: its MD5 is the
/// events' eTag.
const SAMPLE_BODY: &[u8] = "date,city,amount\n2026-11-24,São Paulo,42\n".as_bytes();
const SAMPLE_KEY: &str = "incoming/daily report São Paulo.csv";
const SOURCE: &str = "s3mm-demo-source";
const DEST: &str = "s3mm-demo-archive";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs cargo-lambda on PATH; scripts/test.sh runs it"]
async fn mover_binary_moves_each_sample_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, endpoint) = start_local_s3(dir.path());
    let settings = ClientSettings::default();
    let client = client_for_endpoint(&endpoint, local_s3::DEFAULT_ACCESS_KEY, local_s3::DEFAULT_SECRET_KEY, &settings);
    for bucket in [SOURCE, DEST] {
        client.create_bucket().bucket(bucket).send().await.expect("bucket");
    }

    let port = free_port();
    let env = format!(
        "AWS_ENDPOINT_URL_S3={endpoint},AWS_ACCESS_KEY_ID={},AWS_SECRET_ACCESS_KEY={},AWS_REGION=us-east-1,\
         DEST_BUCKET={DEST},DEST_PREFIX=archive/,SOURCE_PREFIX=incoming/,SOURCE_BUCKET={SOURCE},LOG_FORMAT=json",
        local_s3::DEFAULT_ACCESS_KEY,
        local_s3::DEFAULT_SECRET_KEY
    );
    let watch = cargo_lambda()
        .args(["watch", "--quiet", "--ignore-changes", "--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        .args(["--env-vars", &env])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo lambda watch starts");
    let _watch = Killed(watch);

    for event in [
        "mover-s3-put.json",
        "mover-sqs.json",
        "mover-sqs-eventbridge.json",
        "mover-eventbridge.json",
        "mover-batch-operations-1.0.json",
        "mover-batch-operations-2.0.json",
    ] {
        client
            .put_object()
            .bucket(SOURCE)
            .key(SAMPLE_KEY)
            .body(SAMPLE_BODY.to_vec().into())
            .send()
            .await
            .expect("sample object");
        let output = invoke(port, event);
        let landed = client.get_object().bucket(DEST).key("archive/daily report São Paulo.csv").send().await;
        let body = landed.expect("landed").body.collect().await.expect("body").into_bytes();
        assert_eq!(body.as_ref(), SAMPLE_BODY, "{event}: {output}");
        let source = client.head_object().bucket(SOURCE).key(SAMPLE_KEY).send().await;
        assert!(source.is_err(), "{event}: source deleted");
        if event.starts_with("mover-sqs") {
            let answer: serde_json::Value = serde_json::from_str(&output).expect("JSON answer");
            assert_eq!(answer["batchItemFailures"], serde_json::json!([]), "{event}: {output}");
        }
        if event.starts_with("mover-batch-operations") {
            let answer: serde_json::Value = serde_json::from_str(&output).expect("JSON answer");
            assert_eq!(answer["results"][0]["resultCode"], "Succeeded", "{event}: {output}");
            assert_eq!(answer["results"][0]["taskId"], "dGFza2lkZ29lc2hlcmUK", "{event}: {output}");
        }
        client.delete_object().bucket(DEST).key("archive/daily report São Paulo.csv").send().await.expect("reset");
    }
}

/// Invokes through the emulator, waiting out the first build of the binary.
fn invoke(port: u16, event: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let output = cargo_lambda()
            .args(["invoke", "mover", "--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .args(["--data-file", &format!("events/{event}"), "--output-format", "json"])
            .output()
            .expect("cargo lambda invoke runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return stdout;
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // Until the emulator listens, invoke cannot connect; anything else is a failure.
        let not_up = stderr.contains("onnection refused") || stderr.contains("error sending request");
        assert!(not_up && Instant::now() < deadline, "invoke {event} failed: {stdout} {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
