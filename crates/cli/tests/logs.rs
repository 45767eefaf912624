//! Logs never carry credentials or object contents. Every code path that
//! logs (moves that succeed, fail, are denied, are skipped; a merge with
//! rows, a mismatched header and a file it may not read) runs with markers
//! planted in the secret key, the session token, the data rows and a
//! header, at `debug` for every crate, and the captured log must hold none
//! of them while still naming the objects (so an empty log cannot pass).

mod common;

use local_s3::{LocalS3, Options};
use s3mm_core::Mover;
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use s3mm_core::keys::encode_event_key;
use s3mm_core::merge::{BatchItem, MergeTask};
use serde_json::json;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCESS_KEY: &str = "AKIALOGTESTACCESSKEY";
const SECRET: &str = "secret-7f3a9c1e5b-never-logged";
const TOKEN: &str = "token-2d8e6f0a4c-never-logged";
const ROW: &str = "row-9b1d5f3e7a-never-logged";
const HEADER: &str = "header-4c0e8a2f6d-never-logged";

fn leaks(log: &str) -> Vec<&'static str> {
    [SECRET, TOKEN, ROW, HEADER].into_iter().filter(|marker| log.contains(marker)).collect()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn server(dir: &std::path::Path) -> LocalS3 {
    let mut options = Options::new(dir);
    options.access_key = ACCESS_KEY.into();
    options.secret_key = SECRET.into();
    let server = LocalS3::start_with(options).await.expect("local-s3");
    for bucket in ["src", "dst"] {
        server.create_bucket(bucket).expect("bucket");
    }
    server
}

/// The handlers in-process, under a subscriber that records everything at
/// debug (current-thread runtime, so every task logs through it).
#[tokio::test]
async fn handlers_log_keys_but_never_secrets_or_contents() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().json().with_env_filter("debug").with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let settings = ClientSettings { max_attempts: 2, initial_backoff: Duration::from_millis(1), ..Default::default() };
    let client = client_for_endpoint(&server.endpoint(), ACCESS_KEY, SECRET, &settings);

    // The mover: one moved, one whose delete is denied, one skipped, one missing.
    let config = common::mover_config(4);
    let handler = mover::Handler::new(Mover::new(client.clone(), config));
    let mut records = Vec::new();
    for key in ["in/moved.csv", "elsewhere/skipped.csv", "in/ghost.csv"] {
        let etag = if key == "in/ghost.csv" {
            "0123456789abcdef0123456789abcdef".to_owned()
        } else {
            server.put_object("src", key, format!("id,secret\n1,{ROW}\n").as_bytes()).expect("seed")
        };
        records.push(json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "src"}, "object": {"key": encode_event_key(key), "eTag": etag.trim_matches('"')}}}));
    }
    handler.handle(&json!({ "Records": records }), "req-1").await.expect_err("the ghost fails the invocation");
    let etag = server.put_object("src", "in/denied.csv", format!("id\n{ROW}\n").as_bytes()).expect("seed");
    server.faults().deny("src", &["DeleteObject"]);
    let denied = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": json!({"Records": [
        {"eventSource": "aws:s3", "s3": {"bucket": {"name": "src"}, "object": {"key": "in/denied.csv", "eTag": etag.trim_matches('"')}}}
    ]}).to_string()}, {"messageId": "m2", "eventSource": "aws:sqs", "body": format!("{{\"Records\": [\"{ROW}\"")}]});
    let response = handler.handle(&denied, "req-2").await.expect("answered");
    assert_eq!(response.body["batchItemFailures"].as_array().map(Vec::len), Some(2));
    server.faults().clear();

    // The merge's three steps: rows, a file with another header, a file it may not read.
    for i in 0..5 {
        server.put_object("src", &format!("csvs/{i}.csv"), format!("id,v\n{i},{ROW}\n").as_bytes()).expect("seed");
    }
    server.put_object("src", "csvs/5.csv", format!("id,{HEADER}\n5,{ROW}\n").as_bytes()).expect("seed");
    let input = json!({"source_bucket": "src", "source_prefix": "csvs/", "dest_bucket": "dst", "dest_prefix": "m/",
                       "run_id": "r1", "single_output": true, "batch_size": 3});
    let generated =
        batch_generator::handle(&client, &input, &s3mm_core::MergeConfig::default(), "req-3").await.expect("generated");
    let items: Vec<BatchItem> =
        serde_json::from_slice(&server.object("dst", &generated.batches_key).expect("batches").data).expect("items");
    let merger = common::merger(&client, 4);
    for batch in items {
        let task = MergeTask {
            run_id: generated.run_id.clone(),
            source_bucket: "src".into(),
            dest_bucket: "dst".into(),
            run_prefix: generated.run_prefix.clone(),
            batch,
        };
        merger.handle(&serde_json::to_value(&task).expect("json")).await.expect("merged");
    }
    let task = json!({"run_id": "r1", "source_bucket": "src", "dest_bucket": "dst", "run_prefix": generated.run_prefix,
                      "single_output": true, "delete_sources": false});
    results_aggregator::handle(&client, &task).await.expect("aggregated");
    let merged = server.object("dst", "m/r1/merged.csv").expect("merged").data;
    assert_eq!(String::from_utf8_lossy(&merged).matches(ROW).count(), 5, "the rows did reach S3");

    let log = String::from_utf8_lossy(&captured.0.lock().expect("log").clone()).into_owned();
    for expected in ["in/moved.csv", "in/ghost.csv", "in/denied.csv", "AccessDenied", "batch merged", "report written"]
    {
        assert!(log.contains(expected), "the log should mention {expected:?}:\n{log}");
    }
    assert!(leaks(&log).is_empty(), "the log leaks {:?}:\n{log}", leaks(&log));
}

/// The `s3mm` binary at `RUST_LOG=debug` and `trace`, credentials from the environment
/// as the AWS CLI would take them (session token included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_neither_secrets_nor_contents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    for i in 0..20 {
        server.put_object("src", &format!("csvs/{i}.csv"), format!("id,v\n{i},{ROW}\n").as_bytes()).expect("seed");
        server.put_object("src", &format!("in/{i}.csv"), format!("id,v\n{i},{ROW}\n").as_bytes()).expect("seed");
    }
    let run = |level: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_s3mm"))
            .args(args)
            .args(["--endpoint-url", &server.endpoint()])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_SESSION_TOKEN", TOKEN)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", level)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("s3mm runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{args:?}:\n{text}");
        text
    };
    // debug, and trace, where the SDK logs its signing and HTTP exchanges.
    let merge = run("debug", &["merge", "s3://src/csvs/", "s3://dst/merged/", "--run-id", "r1", "--single-output"]);
    let sweep = run("trace", &["move", "s3://src/in/", "s3://dst/moved/"]);
    assert_eq!(server.keys("dst").iter().filter(|k| k.starts_with("moved/")).count(), 20, "the move happened");
    for (name, log, level) in [("merge", &merge, "DEBUG"), ("move", &sweep, "TRACE")] {
        assert!(log.contains(level), "{name}: {level} logging was on:\n{log}");
        assert!(leaks(log).is_empty(), "{name} leaks {:?}:\n{log}", leaks(log));
    }
}
