//! Throughput of an in-process local-s3 driven by aws-sdk-s3 over HTTP:
//! PUT then GET of 1 KiB objects with 64 requests in flight, then a full
//! ListObjectsV2 pagination over 300,000 keys.
//!
//! `cargo bench -p local-s3 --bench throughput`; BENCH_OBJECTS and
//! BENCH_LIST_KEYS override the sizes. Also prints (untimed against any
//! target) how long loading the keys and rebuilding the index on restart take.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use local_s3::LocalS3;

const IN_FLIGHT: usize = 64;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn report(what: &str, ops: usize, took: Duration, target: &str) {
    let rate = ops as f64 / took.as_secs_f64();
    println!("{what:<28} {ops:>8} ops  {:>8.3} s  {rate:>10.0} ops/s   (target {target})", took.as_secs_f64());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let objects = env_count("BENCH_OBJECTS", 20_000);
    let list_keys = env_count("BENCH_LIST_KEYS", 300_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = Arc::new(LocalS3::start(dir.path()).await.expect("server starts"));
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(s3.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(s3.access_key(), s3.secret_key(), None, None, "bench"))
        .build();
    let client = Client::from_conf(config);
    s3.create_bucket("bench").expect("bucket");
    let body = Bytes::from(vec![b'x'; 1024]);

    let key = |i: usize| format!("obj/{:02}/{i:07}", i % 100);
    let started = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let (client, body, key) = (client.clone(), body.clone(), key(i));
            async move { client.put_object().bucket("bench").key(key).body(ByteStream::from(body)).send().await }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|r| async move {
            r.expect("PUT succeeds");
        })
        .await;
    report("PUT 1 KiB", objects, started.elapsed(), ">= 3,000/s");

    let started = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let (client, key) = (client.clone(), key(i));
            async move {
                let out = client.get_object().bucket("bench").key(key).send().await.expect("GET succeeds");
                out.body.collect().await.expect("GET body").into_bytes().len()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|len| async move { assert_eq!(len, 1024) })
        .await;
    report("GET 1 KiB", objects, started.elapsed(), ">= 5,000/s");

    s3.create_bucket("listing").expect("bucket");
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let loaders: Vec<_> = (0..workers)
        .map(|w| {
            let s3 = Arc::clone(&s3);
            tokio::task::spawn_blocking(move || {
                for i in (w..list_keys).step_by(workers) {
                    s3.put_object("listing", &format!("data/{:03}/part-{i:07}.csv", i % 1000), b"")
                        .expect("direct put");
                }
            })
        })
        .collect();
    for l in loaders {
        l.await.expect("loader");
    }
    println!("(loaded {list_keys} keys directly in {:.1} s)", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut pages = client.list_objects_v2().bucket("listing").into_paginator().send();
    let mut listed = 0;
    let mut last: Option<String> = None;
    while let Some(page) = pages.next().await {
        for o in page.expect("LIST succeeds").contents() {
            let k = o.key().expect("key").to_owned();
            assert!(last.as_ref().is_none_or(|l| *l < k), "keys in order");
            assert!(o.e_tag().is_some(), "ETag present");
            last = Some(k);
            listed += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(listed, list_keys);
    report("LIST keys (1000/page)", listed, took, "300k in <= 3 s");
    println!("LIST pages/s: {:.0}", listed as f64 / 1000.0 / took.as_secs_f64());

    // Not a target: how long a restart takes to rebuild this index.
    let Ok(s3) = Arc::try_unwrap(s3) else { panic!("server still shared") };
    s3.shutdown().await;
    let started = Instant::now();
    let s3 = LocalS3::start(dir.path()).await.expect("restart");
    let took = started.elapsed();
    let total = s3.keys("bench").len() + s3.keys("listing").len();
    println!("(restart rebuilt the index of {total} objects in {:.1} s)", took.as_secs_f64());
}
