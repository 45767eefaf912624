//! The CSV merge against the system it replaces and the tools a team would
//! reach for, in one run on one local-s3:
//!
//! - s3mm: the three merge steps in-process, 50 batches at once (the Map's
//!   concurrency), 64 fetches in flight per batch;
//! - the replaced algorithm in Python/boto3: list, GET each file in turn;
//! - the same with a ThreadPoolExecutor of 50;
//! - `s5cmd cp` of the prefix to disk, then a header-deduplicating concat.
//!
//! First with no added latency (FILES, default 100,000), then with 20 ms
//! per request as S3 has (LATENCY_FILES, default 10,000; the sequential
//! peer merges SEQ_FILES of them, default 500, as it needs 20 ms a file).
//! Last, one 1,000-file batch at 20 ms.
//!
//! `scripts/bench-tools.sh && cargo bench -p csv-merger --bench merge`
//! (FETCH_CONCURRENCY=N changes fetches in flight per batch; PEERS=0 runs s3mm alone.)

use futures::{StreamExt, stream};
use local_s3::{LocalS3, Options};
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use s3mm_core::direct::Direct;
use s3mm_core::merge::{AggregateTask, BatchItem, MergeRequest, MergeTask, aggregate, generate_batches, merge_batch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MAP_CONCURRENCY: usize = 50;

struct Row {
    name: String,
    files: u64,
    seconds: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.files as f64 / self.seconds
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed(server: &LocalS3, prefix: &str, count: usize) {
    for i in 0..count {
        let body = format!(
            "id,name,amount,created_at\n{i},customer {i},{}.{:02},2026-11-24T12:00:00Z\n",
            i * 7 % 10_000,
            i % 100
        );
        server.put_object("b-in", &format!("{prefix}{i:07}.csv"), body.as_bytes()).expect("seed");
    }
}

async fn s3mm(server: &LocalS3, prefix: &str, run_id: &str) -> Row {
    let client =
        client_for_endpoint(&server.endpoint(), server.access_key(), server.secret_key(), &ClientSettings::default());
    let input = serde_json::json!({"source_bucket": "b-in", "source_prefix": prefix, "dest_bucket": "b-out",
        "dest_prefix": "merged/", "batch_size": 1000, "run_id": run_id});
    let started = Instant::now();
    let request = MergeRequest::from_input(&input, 1000, run_id).expect("input");
    let generated =
        generate_batches(&client, &request, s3mm_core::config::DEFAULT_LIST_CONCURRENCY).await.expect("batches");
    let items: Vec<BatchItem> =
        serde_json::from_slice(&server.object("b-out", &generated.batches_key).expect("batches.json").data)
            .expect("items");
    let tasks: Vec<MergeTask> = items
        .into_iter()
        .map(|batch| MergeTask {
            run_id: generated.run_id.clone(),
            source_bucket: "b-in".into(),
            dest_bucket: "b-out".into(),
            run_prefix: generated.run_prefix.clone(),
            batch,
        })
        .collect();
    let direct = Direct::new(&client);
    let results: Vec<_> = stream::iter(&tasks)
        .map(|task| merge_batch(&client, &direct, task, env_usize("FETCH_CONCURRENCY", 64)))
        .buffer_unordered(MAP_CONCURRENCY)
        .collect()
        .await;
    let rows: u64 = results.into_iter().map(|r| r.expect("batch").rows).sum();
    let task = AggregateTask {
        run_id: generated.run_id.clone(),
        source_bucket: "b-in".into(),
        dest_bucket: "b-out".into(),
        run_prefix: generated.run_prefix.clone(),
        single_output: false,
        delete_sources: false,
    };
    let summary = aggregate(&client, &task).await.expect("report");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(rows, generated.total_files, "one row per file");
    assert_eq!(summary.failed_batches, 0);
    Row { name: "s3mm (3 steps, Map concurrency 50)".into(), files: generated.total_files, seconds }
}

fn python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-bench/bin/python");
    venv.exists().then_some(venv)
}

fn peer(server: &LocalS3, name: &str, prefix: &str, limit: usize) -> Option<Row> {
    if std::env::var("PEERS").is_ok_and(|v| v == "0") {
        return None;
    }
    let python = python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/merge_peers.py");
    let output = Command::new(python)
        .arg(script)
        .arg(name)
        .args(["--endpoint-url", &server.endpoint(), "--bucket", "b-in", "--prefix", prefix])
        .args(["--dest-bucket", "b-out", "--dest-key", &format!("peers/{name}.csv"), "--limit", &limit.to_string()])
        .env("AWS_ACCESS_KEY_ID", server.access_key())
        .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    let line: serde_json::Value = serde_json::from_slice(&output.stdout).expect("peer JSON line");
    let files = line["files"].as_u64().expect("files");
    assert_eq!(line["rows"].as_u64(), Some(files), "{name}: one row per file");
    let label = match name {
        "sequential" => "boto3 sequential (the replaced system)",
        "pool" => "boto3 ThreadPoolExecutor(50)",
        _ => "s5cmd cp + concat",
    };
    Some(Row { name: label.into(), files, seconds: line["seconds"].as_f64().expect("seconds") })
}

fn table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("{:<40} {:>9} {:>9} {:>10} {:>12}", "merge", "files", "seconds", "files/s", "s3mm is");
    let s3mm = rows[0].rate();
    for row in rows {
        println!(
            "{:<40} {:>9} {:>9.2} {:>10.0} {:>11.1}x",
            row.name,
            row.files,
            row.seconds,
            row.rate(),
            s3mm / row.rate()
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let files = env_usize("FILES", 100_000);
    let latency_files = env_usize("LATENCY_FILES", 10_000);
    let seq_files = env_usize("SEQ_FILES", 500);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = LocalS3::start_with(Options::new(dir.path())).await.expect("local-s3");
    server.create_bucket("b-in").expect("bucket");
    server.create_bucket("b-out").expect("bucket");
    if python().is_none() {
        println!("peers skipped: run scripts/bench-tools.sh first");
    }

    seed(&server, "flat/", files);
    let mut rows = vec![s3mm(&server, "flat/", "flat").await];
    for name in ["sequential", "pool", "s5cmd"] {
        rows.extend(peer(&server, name, "flat/", 0));
    }
    table(&format!("{files} one-row CSVs, no added latency"), &rows);

    seed(&server, "slow/", latency_files);
    server.faults().set_latency(Duration::from_millis(20), Duration::ZERO);
    let mut rows = vec![s3mm(&server, "slow/", "slow").await];
    rows.extend(peer(&server, "sequential", "slow/", seq_files));
    for name in ["pool", "s5cmd"] {
        rows.extend(peer(&server, name, "slow/", 0));
    }
    table(&format!("{latency_files} one-row CSVs, 20 ms per request (sequential: first {seq_files})"), &rows);

    seed(&server, "one-batch/", 1000);
    let one = s3mm(&server, "one-batch/", "one-batch").await;
    let report: serde_json::Value =
        serde_json::from_slice(&server.object("b-out", "merged/one-batch/report.json").expect("report").data)
            .expect("json");
    println!(
        "\none 1,000-file batch at 20 ms per request: csv-merger {} ms; whole run (list, batch, report) {:.2} s",
        report["batch_ms"]["max"], one.seconds
    );
}
