//! Fault soaks: the mover and the merge against local-s3 injecting 5% of
//! faults of every kind (503 SlowDown, 500, dropped connections after the
//! work was done, CopyObject answered 200 with an error) plus latency
//! jitter. Invariants are checked object by object from the bytes in the
//! buckets and from the server's journal of what it did, in order.
//!
//! CI runs a small size; `SOAK_OBJECTS=20000 SOAK_FILES=30000 cargo test
//! --release -p s3mm-cli --test soak -- --nocapture --test-threads=1` runs
//! the full one (the README's figures).

mod common;

use aws_sdk_s3::config::interceptors::{BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use futures::{StreamExt, stream};
use local_s3::{FaultKind, LocalS3, Options};
use s3mm_cli::pipeline::{self, MergeOptions};
use s3mm_cli::s3url::S3Url;
use s3mm_core::Mover;
use s3mm_core::client::{ClientSettings, client_for_endpoint};
use s3mm_core::keys::encode_event_key;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts SDK operations and their attempts, so the soak can report how
/// many requests the SDK retried.
#[derive(Debug, Clone, Default)]
struct Attempts {
    operations: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "soak-attempts"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.operations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Attempts {
    /// The client, with this counter attached.
    fn attach(&self, client: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(client.config().to_builder().interceptor(self.clone()).build())
    }

    /// (operations, SDK retries)
    fn read(&self) -> (u64, u64) {
        let operations = self.operations.load(Ordering::Relaxed);
        (operations, self.attempts.load(Ordering::Relaxed).saturating_sub(operations))
    }
}

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Deterministic shuffle (xorshift), so a failing order can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

async fn faulty_server(dir: &std::path::Path, seed: u64) -> LocalS3 {
    let mut options = Options::new(dir);
    options.seed = seed;
    let server = LocalS3::start_with(options).await.expect("local-s3");
    server.create_bucket("src").expect("bucket");
    server.create_bucket("dst").expect("bucket");
    server
}

fn start_faults(server: &LocalS3) {
    server.faults().set_rate(0.05, &FaultKind::ALL);
    server.faults().set_latency(Duration::ZERO, Duration::from_millis(3));
    server.enable_journal();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_soak_loses_nothing_duplicates_nothing_deletes_nothing_early() {
    let objects = size("SOAK_OBJECTS", 2_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = faulty_server(dir.path(), 7).await;
    let mut bodies = HashMap::new();
    let mut events = Vec::new();
    for i in 0..objects {
        let key = if i % 50 == 0 { format!("in/ç {i:05}+x.csv") } else { format!("in/{i:05}.csv") };
        let body = format!("id\n{i}\n").into_bytes();
        let etag = server.put_object("src", &key, &body).expect("seed");
        let record = json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "src"}, "object": {"key": encode_event_key(&key), "size": body.len(), "eTag": etag.trim_matches('"')}}});
        // Every event twice.
        events.push(record.clone());
        events.push(record);
        bodies.insert(key, body);
    }
    shuffle(&mut events, 0x5eed);
    start_faults(&server);

    // Short retry budget so faults reach the handler and redelivery is exercised.
    let settings = ClientSettings {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let attempts = Attempts::default();
    let client =
        attempts.attach(&client_for_endpoint(&server.endpoint(), server.access_key(), server.secret_key(), &settings));
    let config = common::mover_config(10);
    let handler = mover::Handler::new(Mover::new(client, config));

    // SQS semantics: batches of 10, many at once; failed messages come back.
    let mut pending: Vec<serde_json::Value> = events;
    let mut rounds = 0;
    let mut reported_failures = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 20, "{} events still failing after 20 deliveries", pending.len());
        let batches: Vec<Vec<serde_json::Value>> = pending.chunks(10).map(<[_]>::to_vec).collect();
        let retry: Vec<Vec<serde_json::Value>> = stream::iter(batches)
            .enumerate()
            .map(|(n, batch)| {
                let handler = &handler;
                async move {
                    let records: Vec<serde_json::Value> = batch
                        .iter()
                        .enumerate()
                        .map(|(i, r)| json!({"messageId": format!("{i}"), "eventSource": "aws:sqs", "body": json!({"Records": [r]}).to_string()}))
                        .collect();
                    let response = handler.handle(&json!({ "Records": records }), &format!("soak-{n}")).await.expect("answered");
                    let failed: Vec<usize> = response.body["batchItemFailures"]
                        .as_array()
                        .expect("array")
                        .iter()
                        .map(|f| f["itemIdentifier"].as_str().and_then(|s| s.parse().ok()).expect("id"))
                        .collect();
                    failed.into_iter().map(|i| batch[i].clone()).collect::<Vec<_>>()
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        pending = retry.into_iter().flatten().collect();
        reported_failures += pending.len();
    }
    server.faults().clear();

    // Every source at its destination, byte for byte, and nothing else there.
    for (key, body) in &bodies {
        assert!(server.object("src", key).is_none(), "{key} still at the source");
        let dest = format!("out/{}", &key[3..]);
        let landed = server.object("dst", &dest).unwrap_or_else(|| panic!("{dest} missing: lost"));
        assert_eq!(&landed.data[..], &body[..], "{dest} bytes");
    }
    let expected: HashSet<String> = bodies.keys().map(|k| format!("out/{}", &k[3..])).collect();
    let landed: HashSet<String> = server.keys("dst").into_iter().collect();
    assert_eq!(landed, expected, "exactly the expected destination keys");

    // No source deleted before a copy of it was confirmed (a 200 the client saw).
    let journal = server.journal();
    let mut confirmed: HashMap<String, u64> = HashMap::new();
    let mut premature = Vec::new();
    let mut deletes = 0;
    for entry in &journal {
        match (entry.operation.as_str(), entry.status, entry.fault) {
            ("CopyObject", 200, None) if entry.bucket == "dst" => {
                confirmed.entry(format!("in/{}", &entry.key[4..])).or_insert(entry.seq);
            }
            ("DeleteObject", 204, _) if entry.bucket == "src" => {
                deletes += 1;
                if !confirmed.contains_key(&entry.key) {
                    premature.push(entry.key.clone());
                }
            }
            _ => {}
        }
    }
    assert!(premature.is_empty(), "deleted before a confirmed copy: {premature:?}");
    let injected = server.faults_injected();
    let total_faults: u64 = injected.values().sum();
    let (operations, retries) = attempts.read();
    println!(
        "move soak: {objects} objects, {} deliveries, {total_faults} faults injected {injected:?}, {operations} S3 operations, {retries} SDK retries, {reported_failures} failures reported and redelivered over {rounds} rounds, {deletes} deletes, lost 0, duplicated 0, premature deletes 0",
        objects * 2
    );
    assert!(total_faults > 0, "faults were injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_soak_every_row_once_and_every_key_accounted_for() {
    let files = size("SOAK_FILES", 3_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = faulty_server(dir.path(), 11).await;
    for i in 0..files {
        server.put_object("src", &format!("csvs/{i:06}.csv"), format!("id,v\n{i},r{i}\n").as_bytes()).expect("seed");
    }
    start_faults(&server);
    let attempts = Attempts::default();
    let client = attempts.attach(&client_for_endpoint(
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        &ClientSettings {
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(50),
            ..Default::default()
        },
    ));
    let options = MergeOptions {
        batch_size: 250,
        map_concurrency: 50,
        fetch_concurrency: 64,
        list_concurrency: 8,
        target_bytes: None,
        compression: "none".into(),
        incremental: false,
        settle_seconds: None,
        takeover: None,
        single_output: true,
        delete_sources: false,
        run_id: "soak".into(),
    };
    let source = S3Url { bucket: "src".into(), prefix: "csvs/".into() };
    let dest = S3Url { bucket: "dst".into(), prefix: "merged/".into() };
    let progress = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let outcome = pipeline::merge(&client, &source, &dest, &options, &progress).await.expect("merged");
    server.faults().clear();
    assert!(outcome.batch_errors.is_empty(), "{:?}", outcome.batch_errors);
    assert_eq!(outcome.summary.failed_batches, 0);

    let mut seen = vec![0u32; files];
    for key in server.keys("dst").iter().filter(|k| k.starts_with("merged/soak/merged-")) {
        let data = server.object("dst", key).expect("output").data;
        let text = String::from_utf8(data.to_vec()).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,v"), "{key}: header once, first");
        for line in lines {
            let id: usize = line.split(',').next().and_then(|v| v.parse().ok()).expect("id");
            seen[id] += 1;
        }
    }
    let wrong: Vec<usize> = seen.iter().enumerate().filter(|(_, n)| **n != 1).map(|(i, _)| i).collect();
    assert!(wrong.is_empty(), "rows not seen exactly once: {:?}", &wrong[..wrong.len().min(10)]);

    let report: serde_json::Value =
        serde_json::from_slice(&server.object("dst", "merged/soak/report.json").expect("report").data).expect("json");
    let accounted = ["merged_files", "empty_files", "header_only_files", "skipped_files"]
        .iter()
        .map(|f| report[f].as_u64().expect("count"))
        .sum::<u64>();
    assert_eq!(report["total_files"].as_u64(), Some(files as u64));
    assert_eq!(accounted, files as u64, "every source key accounted for");
    let merged = server.object("dst", "merged/soak/merged.csv").expect("merged.csv").data;
    assert_eq!(merged.iter().filter(|b| **b == b'\n').count(), files + 1);
    let injected: BTreeMap<String, u64> = server.faults_injected();
    let (operations, retries) = attempts.read();
    println!(
        "merge soak: {files} files, {} faults injected {injected:?}, {operations} S3 operations, {retries} SDK retries, every row exactly once (lost 0, duplicated 0), report accounts for all {files} keys",
        injected.values().sum::<u64>()
    );
    assert!(injected.values().sum::<u64>() > 0);
}
