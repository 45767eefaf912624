//! s3mm-core against a real S3-compatible server over HTTP: local-s3 started
//! in-process on a random port, a fresh server and bucket per test. Every
//! assertion reads the bytes that landed in the buckets.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use futures::StreamExt;
use local_s3::FaultKind;
use s3mm_core::client::ClientSettings;
use s3mm_core::direct::{Direct, DirectCounts};
use s3mm_core::{
    KeptReason, ListOptions, MoveOutcome, MoveRequest, Mover, MoverConfig, SkipReason, client_for_endpoint,
    delete_many, fetch_many, fetch_many_with, list_objects,
};
use s3mm_test_support::{S3Fixture, fast_retries};
use std::collections::HashMap;
use std::time::Duration;

async fn fixture() -> S3Fixture {
    S3Fixture::start(&["src", "dst"]).await
}

fn no_retries() -> ClientSettings {
    ClientSettings { max_attempts: 1, ..fast_retries() }
}

fn config(source_prefix: &str, dest_prefix: &str) -> MoverConfig {
    MoverConfig {
        dest_bucket: "dst".into(),
        dest_prefix: dest_prefix.into(),
        source_prefix: source_prefix.into(),
        keep_source_prefix: false,
        source_bucket: None,
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: 16,
        sdk_only: false,
    }
}

fn request(f: &S3Fixture, key: &str) -> MoveRequest {
    let stored = f.server.object("src", key).expect("source exists");
    MoveRequest {
        bucket: "src".into(),
        key: key.into(),
        etag: Some(stored.etag.trim_matches('"').to_owned()),
        size: Some(stored.data.len() as u64),
    }
}

const ODD_KEYS: &[&str] = &[
    "plain.csv",
    "with space.csv",
    "literal+plus.csv",
    "percent%sign.csv",
    "percent%2B.csv",
    "café/日本.csv",
    "q?a&b#c=d.csv",
    "/leading.csv",
    "trailing/",
    "double//slash.csv",
    "emoji😀 x.csv",
];

#[tokio::test]
async fn lists_every_page_with_suffix_start_after_and_exclusion() {
    let f = fixture().await;
    for i in 0..2600 {
        f.server.put_object("src", &format!("in/{i:05}.csv"), b"x").expect("put");
    }
    f.server.put_object("src", "in/readme.txt", b"x").expect("put");
    f.server.put_object("src", "in/out/00001.csv", b"x").expect("put");
    f.server.put_object("src", "other/00001.csv", b"x").expect("put");

    let all: Vec<_> = list_objects(&f.client, "src", "in/", ListOptions::default()).collect().await;
    let keys: Vec<String> = all.into_iter().map(|r| r.expect("page").key).collect();
    assert_eq!(keys.len(), 2602);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys come in order");
    assert!(f.server.counters().get("ListObjectsV2").copied().unwrap_or(0) >= 3, "more than one page was read");

    let options = ListOptions {
        suffix: Some(".csv".into()),
        start_after: Some("in/00099.csv".into()),
        exclude_prefix: Some("in/out/".into()),
        page_size: Some(500),
        ..ListOptions::default()
    };
    let filtered: Vec<_> = list_objects(&f.client, "src", "in/", options).collect().await;
    let filtered: Vec<_> = filtered.into_iter().map(|r| r.expect("page")).collect();
    assert_eq!(filtered.len(), 2500);
    assert_eq!(filtered[0].key, "in/00100.csv");
    assert!(filtered.iter().all(|o| o.etag.is_some() && o.size == 1));
}

#[tokio::test]
async fn listing_a_missing_bucket_names_it() {
    let f = fixture().await;
    let first = list_objects(&f.client, "no-such-bucket", "p/", ListOptions::default()).next().await;
    let err = first.expect("one item").expect_err("missing bucket");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test]
async fn moves_every_odd_key_byte_for_byte_with_metadata_and_tags() {
    let f = fixture().await;
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let full = format!("in/{key}");
        f.client
            .put_object()
            .bucket("src")
            .key(&full)
            .body(ByteStream::from(format!("body {i} of {key}\n").into_bytes()))
            .content_type("text/csv")
            .metadata("origin", format!("n{i}"))
            .tagging("team=data&idx=".to_owned() + &i.to_string())
            .send()
            .await
            .expect("put");
    }
    let mover = Mover::new(f.client.clone(), config("in", "out/"));
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let full = format!("in/{key}");
        let outcome = mover.move_object(&request(&f, &full)).await.expect("moved");
        let dest_key = format!("out/{key}");
        assert_eq!(
            outcome,
            MoveOutcome::Moved {
                dest_bucket: "dst".into(),
                dest_key: dest_key.clone(),
                bytes: outcome_bytes(&outcome)
            }
        );
        let landed = f.server.object("dst", &dest_key).unwrap_or_else(|| panic!("{dest_key} landed"));
        assert_eq!(landed.data.as_ref(), format!("body {i} of {key}\n").as_bytes());
        assert_eq!(landed.content_type.as_deref(), Some("text/csv"));
        assert_eq!(landed.metadata.get("origin").map(String::as_str), Some(format!("n{i}").as_str()));
        let tags: HashMap<_, _> = landed.tags.iter().cloned().collect();
        assert_eq!(tags.get("team").map(String::as_str), Some("data"));
        assert_eq!(tags.get("idx"), Some(&i.to_string()));
        assert!(f.server.object("src", &full).is_none(), "source {full} deleted");
    }
    let counters = f.server.counters();
    assert_eq!(counters.get("CopyObject").copied(), Some(ODD_KEYS.len() as u64));
    assert_eq!(counters.get("DeleteObject").copied(), Some(ODD_KEYS.len() as u64));
    assert_eq!(counters.get("HeadObject").copied().unwrap_or(0), 0, "no HEAD on the happy path");
    // Every copy and delete was signed directly and local-s3 (s3s, which
    // checks SigV4) accepted it: the odd keys are encoded as the SDK does.
    let n = ODD_KEYS.len() as u64;
    assert_eq!(mover.direct_counts(), DirectCounts { direct: 2 * n, fallbacks: 0 });
}

#[tokio::test]
async fn direct_gets_of_odd_keys_return_the_bytes_and_anything_else_goes_through_the_sdk() {
    let f = fixture().await;
    let keys: Vec<String> = ODD_KEYS.iter().map(|key| format!("in/{key}")).collect();
    for key in &keys {
        f.server.put_object("src", key, format!("body of {key}").as_bytes()).expect("put");
    }
    let direct = Direct::new(&f.client);
    let fetched: Vec<_> = fetch_many_with(direct.clone(), &f.client, "src", keys.clone(), 8).collect().await;
    for (fetched, key) in fetched.iter().zip(&keys) {
        assert_eq!(fetched.result.as_ref().expect("fetched").as_ref(), format!("body of {key}").as_bytes());
    }
    let n = keys.len() as u64;
    assert_eq!(direct.counts(), DirectCounts { direct: n, fallbacks: 0 });
    assert_eq!(f.server.counters().get("GetObject").copied(), Some(n), "the route probe sends nothing");

    // A 503 and a dropped connection on the direct path: the SDK's retries
    // take over and the bytes still arrive.
    f.server.faults().fail_nth("GetObject", 1, FaultKind::SlowDown);
    f.server.faults().fail_nth("GetObject", 3, FaultKind::DropConnection);
    let again: Vec<_> = fetch_many_with(direct.clone(), &f.client, "src", keys[..2].to_vec(), 1).collect().await;
    for (fetched, key) in again.iter().zip(&keys) {
        assert_eq!(fetched.result.as_ref().expect("fetched").as_ref(), format!("body of {key}").as_bytes());
    }
    assert_eq!(direct.counts(), DirectCounts { direct: n, fallbacks: 2 });

    // A missing key: the SDK's answer, naming it.
    let missing: Vec<_> =
        fetch_many_with(direct.clone(), &f.client, "src", vec!["in/nope".to_owned()], 1).collect().await;
    let err = missing[0].result.as_ref().expect_err("missing");
    assert!(err.to_string().contains("s3://src/in/nope"), "{err}");
    assert_eq!(direct.counts().fallbacks, 3);
}

#[tokio::test]
async fn with_s3mm_sdk_only_nothing_goes_direct() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"a").expect("put");
    let direct = Direct::sdk_only(&f.client);
    let fetched: Vec<_> =
        fetch_many_with(direct.clone(), &f.client, "src", vec!["in/a.csv".to_owned()], 1).collect().await;
    assert_eq!(fetched[0].result.as_ref().expect("fetched").as_ref(), b"a");
    assert_eq!(direct.counts(), DirectCounts { direct: 0, fallbacks: 1 });
}

fn outcome_bytes(outcome: &MoveOutcome) -> Option<u64> {
    match outcome {
        MoveOutcome::Moved { bytes, .. } => *bytes,
        _ => None,
    }
}

#[tokio::test]
async fn a_key_of_1024_bytes_moves() {
    let f = fixture().await;
    let key = format!("in/{}", "é".repeat(510));
    assert_eq!(key.len(), 1023);
    let key = format!("{key}x");
    f.server.put_object("src", &key, b"long").expect("put");
    let mut cfg = config("in/", "");
    cfg.dest_bucket = "dst".into();
    let outcome = Mover::new(f.client.clone(), cfg).move_object(&request(&f, &key)).await.expect("moved");
    assert!(matches!(outcome, MoveOutcome::Moved { .. }), "{outcome:?}");
    assert_eq!(f.server.object("dst", &key[3..]).expect("landed").data.as_ref(), b"long");
}

#[tokio::test]
async fn a_changed_etag_refuses_the_copy_and_keeps_the_source() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"old").expect("put");
    let stale = request(&f, "in/a.csv");
    f.server.put_object("src", "in/a.csv", b"newer").expect("overwrite");
    let outcome = Mover::new(f.client.clone(), config("in/", "out/")).move_object(&stale).await.expect("no error");
    assert!(matches!(outcome, MoveOutcome::Skipped { reason: SkipReason::SourceChanged { .. } }), "{outcome:?}");
    assert_eq!(f.server.object("src", "in/a.csv").expect("kept").data.as_ref(), b"newer");
    assert!(f.server.object("dst", "out/a.csv").is_none());
}

#[tokio::test]
async fn duplicate_late_and_missing_events() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"a").expect("put");
    let req = request(&f, "in/a.csv");
    let mover = Mover::new(f.client.clone(), config("in/", "out/"));
    assert!(matches!(mover.move_object(&req).await.expect("first"), MoveOutcome::Moved { .. }));
    assert!(matches!(mover.move_object(&req).await.expect("again"), MoveOutcome::AlreadyMoved { .. }));
    assert_eq!(f.server.object("dst", "out/a.csv").expect("kept").data.as_ref(), b"a");

    let ghost =
        MoveRequest { bucket: "src".into(), key: "in/ghost.csv".into(), etag: Some("abc".into()), size: Some(1) };
    let outcome = mover.move_object(&ghost).await.expect("reported as an outcome");
    assert!(outcome.is_failure());
    assert!(matches!(outcome, MoveOutcome::SourceMissing { .. }));
}

#[tokio::test]
async fn concurrent_duplicates_move_once() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"payload").expect("put");
    let req = request(&f, "in/a.csv");
    let mover = Mover::new(f.client.clone(), config("in/", "out/"));
    let results = futures::future::join_all((0..8).map(|_| mover.move_object(&req))).await;
    for result in results {
        let outcome = result.expect("every delivery succeeds");
        assert!(matches!(outcome, MoveOutcome::Moved { .. } | MoveOutcome::AlreadyMoved { .. }), "{outcome:?}");
    }
    assert!(f.server.object("src", "in/a.csv").is_none());
    assert_eq!(f.server.object("dst", "out/a.csv").expect("landed").data.as_ref(), b"payload");
}

#[tokio::test]
async fn copy_only_keeps_the_source() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"a").expect("put");
    let mut cfg = config("in/", "out/");
    cfg.delete_source = false;
    let outcome = Mover::new(f.client.clone(), cfg).move_object(&request(&f, "in/a.csv")).await.expect("copied");
    assert!(matches!(outcome, MoveOutcome::Copied { kept: KeptReason::CopyOnly, .. }));
    assert!(f.server.object("src", "in/a.csv").is_some());
    assert!(f.server.object("dst", "out/a.csv").is_some());
}

#[tokio::test]
async fn same_bucket_guards_never_delete() {
    let f = fixture().await;
    f.server.put_object("dst", "x.csv", b"x").expect("put");
    f.server.put_object("dst", "archive/y.csv", b"y").expect("put");
    let onto_itself = Mover::new(f.client.clone(), config("", ""));
    let req = MoveRequest { bucket: "dst".into(), key: "x.csv".into(), etag: None, size: Some(1) };
    assert_eq!(
        onto_itself.move_object(&req).await.expect("skipped"),
        MoveOutcome::Skipped { reason: SkipReason::MapsOntoItself }
    );
    let archive = Mover::new(f.client.clone(), config("", "archive"));
    let req = MoveRequest { bucket: "dst".into(), key: "archive/y.csv".into(), etag: None, size: Some(1) };
    assert!(matches!(
        archive.move_object(&req).await.expect("skipped"),
        MoveOutcome::Skipped { reason: SkipReason::UnderDestinationPrefix { .. } }
    ));
    assert_eq!(f.server.object("dst", "x.csv").expect("kept").data.as_ref(), b"x");
    assert_eq!(f.server.object("dst", "archive/y.csv").expect("kept").data.as_ref(), b"y");
    assert_eq!(f.server.counters().get("CopyObject").copied().unwrap_or(0), 0);
}

#[tokio::test]
async fn multipart_copy_path_gives_an_identical_object() {
    let f = fixture().await;
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 17).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    f.client
        .put_object()
        .bucket("src")
        .key("in/big file.bin")
        .body(ByteStream::from(data.clone()))
        .content_type("application/octet-stream")
        .metadata("kind", "big")
        .tagging("size=large")
        .send()
        .await
        .expect("put");
    let mut cfg = config("in/", "out/");
    cfg.multipart_copy_threshold = 5 * 1024 * 1024;
    let mover = Mover::new(f.client.clone(), cfg).with_part_size(5 * 1024 * 1024);
    let outcome = mover.move_object(&request(&f, "in/big file.bin")).await.expect("moved");
    assert!(matches!(outcome, MoveOutcome::Moved { .. }), "{outcome:?}");
    let landed = f.server.object("dst", "out/big file.bin").expect("landed");
    assert!(landed.data.as_ref() == data.as_slice(), "bytes identical");
    assert!(landed.etag.ends_with("-3\""), "three parts: {}", landed.etag);
    assert_eq!(landed.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(landed.metadata.get("kind").map(String::as_str), Some("big"));
    assert_eq!(landed.tags, vec![("size".to_owned(), "large".to_owned())]);
    assert!(f.server.object("src", "in/big file.bin").is_none());
    assert_eq!(f.server.counters().get("UploadPartCopy").copied(), Some(3));
}

#[tokio::test]
async fn twenty_percent_slowdowns_still_complete() {
    let f = fixture().await;
    let keys: Vec<String> = (0..200).map(|i| format!("in/{i:04}.csv")).collect();
    for key in &keys {
        f.server.put_object("src", key, key.as_bytes()).expect("put");
    }
    let requests: Vec<MoveRequest> = keys.iter().map(|k| request(&f, k)).collect();
    f.server.faults().set_rate(0.2, &[FaultKind::SlowDown]);
    let mover = Mover::new(f.client.clone(), config("in/", "out/"));
    let outcomes: Vec<_> =
        futures::stream::iter(&requests).map(|r| mover.move_object(r)).buffer_unordered(32).collect().await;
    f.server.faults().clear();
    for outcome in outcomes {
        let outcome = outcome.expect("retried to success");
        assert!(matches!(outcome, MoveOutcome::Moved { .. } | MoveOutcome::AlreadyMoved { .. }), "{outcome:?}");
    }
    assert!(f.server.faults_injected().get("SlowDown").copied().unwrap_or(0) > 20, "faults were injected");
    for key in &keys {
        assert!(f.server.object("src", key).is_none());
        assert_eq!(
            f.server.object("dst", &format!("out/{}", &key[3..])).expect("landed").data.as_ref(),
            key.as_bytes()
        );
    }
}

#[tokio::test]
async fn a_copy_answered_200_with_an_error_never_leads_to_a_delete() {
    let f = S3Fixture::start_with(&["src", "dst"], &no_retries()).await;
    f.server.put_object("src", "in/a.csv", b"a").expect("put");
    // The direct copy's 200-with-an-error hands the request to the SDK, whose
    // copy is answered the same way.
    f.server.faults().fail_nth("CopyObject", 1, FaultKind::CopyError200);
    f.server.faults().fail_nth("CopyObject", 2, FaultKind::CopyError200);
    let mover = Mover::new(f.client.clone(), config("in/", "out/"));
    let err = mover.move_object(&request(&f, "in/a.csv")).await.expect_err("not confirmed");
    assert!(err.is_transient(), "a redelivery may succeed: {err}");
    assert!(f.server.object("src", "in/a.csv").is_some(), "source kept");
    assert_eq!(f.server.counters().get("DeleteObject").copied().unwrap_or(0), 0);

    // The redelivery succeeds and deletes exactly once.
    let outcome = mover.move_object(&request(&f, "in/a.csv")).await.expect("second delivery");
    assert!(matches!(outcome, MoveOutcome::Moved { .. }));
    assert_eq!(f.server.counters().get("DeleteObject").copied(), Some(1));
}

#[tokio::test]
async fn dropped_connections_and_500s_are_retried() {
    let f = fixture().await;
    f.server.put_object("src", "in/a.csv", b"a").expect("put");
    f.server.faults().fail_nth("CopyObject", 1, FaultKind::DropConnection);
    f.server.faults().fail_nth("DeleteObject", 1, FaultKind::InternalError);
    let outcome = Mover::new(f.client.clone(), config("in/", "out/")).move_object(&request(&f, "in/a.csv")).await;
    assert!(matches!(outcome, Ok(MoveOutcome::Moved { .. })), "{outcome:?}");
    assert!(f.server.object("src", "in/a.csv").is_none());
    assert_eq!(f.server.object("dst", "out/a.csv").expect("landed").data.as_ref(), b"a");
    assert_eq!(f.server.counters().get("CopyObject").copied(), Some(2));
}

#[tokio::test]
async fn fetch_many_keeps_input_order_under_jitter() {
    let f = fixture().await;
    let keys: Vec<String> = (0..300).map(|i| format!("k/{:03}", 299 - i)).collect();
    for key in &keys {
        f.server.put_object("src", key, key.as_bytes()).expect("put");
    }
    f.server.faults().set_latency(Duration::ZERO, Duration::from_millis(15));
    let fetched: Vec<_> = fetch_many(&f.client, "src", keys.clone(), 32).collect().await;
    assert_eq!(fetched.len(), keys.len());
    for (fetched, key) in fetched.iter().zip(&keys) {
        assert_eq!(&fetched.key, key);
        assert_eq!(fetched.result.as_ref().expect("fetched").as_ref(), key.as_bytes());
    }
    let missing: Vec<_> = fetch_many(&f.client, "src", vec!["nope".to_owned()], 4).collect().await;
    let err = missing[0].result.as_ref().expect_err("missing");
    assert!(err.to_string().contains("s3://src/nope"), "{err}");
}

#[tokio::test]
async fn delete_many_uses_calls_of_at_most_1000_keys() {
    let f = fixture().await;
    let keys: Vec<String> = (0..2500).map(|i| format!("d/{i}")).collect();
    for key in &keys {
        f.server.put_object("src", key, b"x").expect("put");
    }
    let report = delete_many(&f.client, "src", keys.clone(), 4).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.deleted, 2500);
    assert_eq!(f.server.counters().get("DeleteObjects").copied(), Some(3));
    assert!(f.server.keys("src").is_empty());

    let report = delete_many(&f.client, "no-such-bucket", vec!["a".to_owned()], 1).await;
    assert_eq!(report.batch_errors.len(), 1);
    assert!(report.batch_errors[0].to_string().contains("no-such-bucket"));
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let f = fixture().await;
    let bad = client_for_endpoint(&f.server.endpoint(), f.server.access_key(), "wrong-secret", &no_retries());
    let err = bad.list_objects_v2().bucket("src").send().await.expect_err("refused");
    let failure = s3mm_core::S3Failure::from_sdk(&err);
    assert_eq!(failure.status, Some(403), "{failure}");
}

#[tokio::test]
async fn tagging_put_through_the_sdk_is_kept_on_copy() {
    let f = fixture().await;
    f.server.put_object("src", "in/t.csv", b"t").expect("put");
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("a b").value("c&d").build().expect("tag"))
        .build()
        .expect("tagging");
    f.client.put_object_tagging().bucket("src").key("in/t.csv").tagging(tagging).send().await.expect("tag");
    Mover::new(f.client.clone(), config("in/", "out/")).move_object(&request(&f, "in/t.csv")).await.expect("moved");
    assert_eq!(f.server.object("dst", "out/t.csv").expect("landed").tags, vec![("a b".to_owned(), "c&d".to_owned())]);
}

#[tokio::test]
async fn listing_returns_every_odd_key_exactly() {
    let f = fixture().await;
    let mut expected: Vec<String> = ODD_KEYS.iter().map(|k| format!("in/{k}")).collect();
    expected.push(format!("in/{}", "k".repeat(1021)));
    expected.push("in/a".into());
    expected.push("in/a/b".into());
    for key in &expected {
        f.server.put_object("src", key, b"x").expect("put");
    }
    let listed: Vec<_> = list_objects(&f.client, "src", "in/", ListOptions::default()).collect().await;
    let mut listed: Vec<String> = listed.into_iter().map(|r| r.expect("page").key).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected);
}
