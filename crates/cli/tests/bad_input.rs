//! The bad-input catalogue: every way a user, S3 or a deployment can hand
//! s3mm something wrong, each with the clear error or the exact result it
//! must get, checked against what lands in (or stays in) the buckets of a
//! real local-s3 over HTTP. Nothing here may lose or duplicate an object.
//!
//! Mover: malformed, truncated and unknown events; keys with spaces, `+`,
//! `%`, unicode, invalid escapes, 1,024 bytes and more; keys that map onto
//! themselves; missing buckets; access denied at each step; throttling;
//! CopyObject answered 200 with an error; zero-byte and binary objects.
//! Merge: execution input with missing and wrong-typed fields, batch_size 0
//! and 10^9, step inputs of the wrong shape, missing buckets, an empty
//! prefix, zero-byte, header-only, binary and invalid-UTF-8 files, a CSV
//! that is one huge line. Configuration: every bad environment value.

mod common;

use local_s3::FaultKind;
use s3mm_core::client::ClientSettings;
use s3mm_core::config::{ConfigError, Env, LogFormat, MergeConfig};
use s3mm_core::keys::encode_event_key;
use s3mm_core::merge::{BatchItem, MergeTask};
use s3mm_core::{Mover, MoverConfig};
use s3mm_test_support::{S3Fixture, fast_retries};
use serde_json::{Value, json};
use std::collections::HashMap;

async fn fixture_with(max_attempts: u32) -> S3Fixture {
    S3Fixture::start_with(&["src", "dst"], &ClientSettings { max_attempts, ..fast_retries() }).await
}

async fn fixture() -> S3Fixture {
    fixture_with(3).await
}

fn mover(f: &S3Fixture, config: MoverConfig) -> mover::Handler {
    mover::Handler::new(Mover::new(f.client.clone(), config))
}

/// An S3 notification record for `key` as S3 would send it (key form-encoded).
fn record(bucket: &str, raw_key: &str, etag: Option<&str>) -> Value {
    let mut object = json!({"key": raw_key});
    if let Some(etag) = etag {
        object["eTag"] = json!(etag.trim_matches('"'));
    }
    json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
           "s3": {"bucket": {"name": bucket}, "object": object}})
}

fn s3_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// Puts an object and returns the event S3 would send for it.
fn put(f: &S3Fixture, key: &str, body: &[u8]) -> Value {
    let etag = f.server.put_object("src", key, body).expect("seed");
    s3_event(vec![record("src", &encode_event_key(key), Some(&etag))])
}

fn data(f: &S3Fixture, bucket: &str, key: &str) -> Option<Vec<u8>> {
    f.server.object(bucket, key).map(|o| o.data.to_vec())
}

/// The source is exactly where it was and nothing reached the destination.
fn untouched(f: &S3Fixture, key: &str, body: &[u8]) {
    assert_eq!(data(f, "src", key).as_deref(), Some(body), "{key} must stay at the source, unchanged");
    assert!(f.server.keys("dst").is_empty(), "nothing may reach the destination: {:?}", f.server.keys("dst"));
}

/// Moved: gone from the source, byte-identical at the destination.
fn moved(f: &S3Fixture, key: &str, dest_key: &str, body: &[u8]) {
    assert!(data(f, "src", key).is_none(), "{key} still at the source");
    assert_eq!(data(f, "dst", dest_key).as_deref(), Some(body), "{dest_key} bytes");
}

async fn mover_error(handler: &mover::Handler, event: &Value) -> (String, String) {
    let err = handler.handle(event, "catalogue").await.expect_err("must fail");
    (err.error_type().to_owned(), err.to_string())
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn truncated_json_in_one_sqs_message_fails_only_that_message() {
    let f = fixture().await;
    let good = put(&f, "in/good.csv", b"id\n1\n");
    let kept = b"id\n2\n";
    f.server.put_object("src", "in/kept.csv", kept).expect("seed");
    let truncated = r#"{"Records":[{"eventSource":"aws:s3","s3":{"bucket":{"name":"src"},"object":{"key":"in/kept.c"#;
    let event = json!({"Records": [
        {"messageId": "m-truncated", "eventSource": "aws:sqs", "body": truncated},
        {"messageId": "m-good", "eventSource": "aws:sqs", "body": good.to_string()},
    ]});
    let response = mover(&f, common::mover_config(8)).handle(&event, "t").await.expect("answered");
    assert_eq!(response.body["batchItemFailures"], json!([{"itemIdentifier": "m-truncated"}]));
    moved(&f, "in/good.csv", "out/good.csv", b"id\n1\n");
    assert_eq!(data(&f, "src", "in/kept.csv").as_deref(), Some(&kept[..]));
}

#[tokio::test]
async fn a_record_without_its_object_is_a_malformed_event() {
    let f = fixture().await;
    let body = b"id\n1\n";
    f.server.put_object("src", "in/a.csv", body).expect("seed");
    let event = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "src"}}}]});
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("record 0") && message.contains("object"), "{message}");
    untouched(&f, "in/a.csv", body);
}

#[tokio::test]
async fn an_unknown_event_shape_says_what_arrived() {
    let f = fixture().await;
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &json!({"hello": "world"})).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("unrecognised event") && message.contains("hello"), "{message}");
}

#[tokio::test]
async fn records_that_are_not_an_array_are_rejected() {
    let f = fixture().await;
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &json!({"Records": "in/a.csv"})).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("Records"), "{message}");
}

#[tokio::test]
async fn payloads_that_are_not_objects_are_rejected() {
    let f = fixture().await;
    let handler = mover(&f, common::mover_config(8));
    for payload in [json!(null), json!(42), json!("in/a.csv"), json!([1, 2])] {
        let (kind, message) = mover_error(&handler, &payload).await;
        assert_eq!(kind, "MalformedEvent", "{payload}");
        assert!(message.contains("unrecognised event"), "{payload}: {message}");
    }
}

#[tokio::test]
async fn an_s3_test_event_is_acknowledged_and_moves_nothing() {
    let f = fixture().await;
    let body = b"id\n1\n";
    f.server.put_object("src", "in/a.csv", body).expect("seed");
    let event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "src"});
    let response = mover(&f, common::mover_config(8)).handle(&event, "t").await.expect("acknowledged");
    assert_eq!(response.body, json!({"test_event": true}));
    untouched(&f, "in/a.csv", body);
}

#[tokio::test]
async fn an_invalid_percent_escape_names_the_key_and_touches_nothing() {
    let f = fixture().await;
    // An object really named with a literal %zz: passing the escape through
    // would move it, but S3 would have sent %25zz for it.
    let body = b"id\n1\n";
    f.server.put_object("src", "in/bad%zz.csv", body).expect("seed");
    let event = s3_event(vec![record("src", "in/bad%zz.csv", None)]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("in/bad%zz.csv") && message.contains("invalid percent escape at byte 6"), "{message}");
    untouched(&f, "in/bad%zz.csv", body);
}

#[tokio::test]
async fn an_escape_that_is_not_utf8_is_rejected() {
    let f = fixture().await;
    let event = s3_event(vec![record("src", "in/%FF%FE.csv", None)]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("does not decode to UTF-8"), "{message}");
}

#[tokio::test]
async fn spaces_plus_percent_and_unicode_keys_move_to_their_exact_names() {
    let f = fixture().await;
    let handler = mover(&f, common::mover_config(8));
    let keys = ["in/a b+c%d.csv", "in/日本 語/ü+%2B.csv", "in/q?a&b#c=d;e.csv", "in/tab\there.csv", "in/emoji 🦀.csv"];
    for (i, key) in keys.iter().enumerate() {
        let body = format!("id\n{i}\n").into_bytes();
        handler.handle(&put(&f, key, &body), "t").await.expect("moved");
        moved(&f, key, &format!("out/{}", &key[3..]), &body);
    }
    assert_eq!(f.server.keys("dst").len(), keys.len(), "one destination per key");
}

#[tokio::test]
async fn a_1024_byte_key_moves_when_its_destination_fits() {
    let f = fixture().await;
    let key = format!("in/{}", "k".repeat(1021));
    assert_eq!(key.len(), 1024);
    let config = MoverConfig { dest_prefix: "ou/".into(), ..common::mover_config(8) };
    let body = b"id\n1\n";
    mover(&f, config).handle(&put(&f, &key, body), "t").await.expect("moved");
    moved(&f, &key, &format!("ou/{}", &key[3..]), body);
}

#[tokio::test]
async fn a_destination_key_over_1024_bytes_is_refused_and_the_source_kept() {
    let f = fixture().await;
    let key = format!("in/{}", "k".repeat(1021));
    let body = b"id\n1\n";
    let event = put(&f, &key, body);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("1025 bytes") && message.contains("source kept"), "{message}");
    untouched(&f, &key, body);
}

#[tokio::test]
async fn an_event_key_over_1024_bytes_is_rejected() {
    let f = fixture().await;
    let event = s3_event(vec![record("src", &format!("in/{}", "k".repeat(1022)), None)]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("1025 bytes") && message.contains("1024-byte limit"), "{message}");
}

#[tokio::test]
async fn a_key_that_maps_onto_itself_is_skipped_untouched() {
    let f = fixture().await;
    // Any bucket, same prefix on both sides: an event from the destination
    // bucket names an object that already is its own destination.
    let config = MoverConfig {
        source_bucket: None,
        source_prefix: "in/".into(),
        dest_prefix: "in/".into(),
        ..common::mover_config(8)
    };
    let body = b"id\n1\n";
    let etag = f.server.put_object("dst", "in/self.csv", body).expect("seed");
    let event = s3_event(vec![record("dst", "in/self.csv", Some(&etag))]);
    let response = mover(&f, config).handle(&event, "t").await.expect("answered");
    assert_eq!(response.tally.skipped, 1);
    assert_eq!(data(&f, "dst", "in/self.csv").as_deref(), Some(&body[..]), "kept, unchanged");
    assert_eq!(f.server.counters().get("DeleteObject").copied().unwrap_or(0), 0, "no delete sent");
}

/// An environment holding exactly `vars`.
fn env_of(vars: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Env::from_lookup(move |name| vars.get(name).cloned())
}

#[test]
fn a_configuration_whose_source_is_its_destination_is_refused() {
    let env = |vars: &[(&str, &str)]| MoverConfig::from(&env_of(vars));
    let same = [("SOURCE_BUCKET", "b-1"), ("DEST_BUCKET", "b-1"), ("SOURCE_PREFIX", "in/"), ("DEST_PREFIX", "in")];
    let err = env(&same).expect_err("maps onto itself");
    assert!(
        matches!(&err, ConfigError::Invalid { var: "DEST_PREFIX", .. }) && err.to_string().contains("onto itself"),
        "{err}"
    );
    let keep =
        [("SOURCE_BUCKET", "b-1"), ("DEST_BUCKET", "b-1"), ("SOURCE_PREFIX", "in/"), ("KEEP_SOURCE_PREFIX", "true")];
    assert!(env(&keep).is_err(), "KEEP_SOURCE_PREFIX with no DEST_PREFIX maps onto itself too");
    // Same bucket, other prefix: a valid (and common) layout.
    let nested =
        [("SOURCE_BUCKET", "b-1"), ("DEST_BUCKET", "b-1"), ("SOURCE_PREFIX", "in/"), ("DEST_PREFIX", "in/done/")];
    assert!(env(&nested).is_ok());
}

#[tokio::test]
async fn a_destination_inside_the_source_prefix_does_not_loop() {
    let f = fixture().await;
    let config = MoverConfig { dest_bucket: "src".into(), dest_prefix: "in/done/".into(), ..common::mover_config(8) };
    let handler = mover(&f, config);
    let body = b"id\n1\n";
    handler.handle(&put(&f, "in/a.csv", body), "t").await.expect("moved");
    assert_eq!(data(&f, "src", "in/done/a.csv").as_deref(), Some(&body[..]));
    assert!(data(&f, "src", "in/a.csv").is_none());
    // The move itself creates an object under the source prefix; its event
    // must be skipped, not moved again to in/done/done/a.csv.
    let echo = s3_event(vec![record("src", "in/done/a.csv", None)]);
    let response = handler.handle(&echo, "t").await.expect("answered");
    assert_eq!(response.tally.skipped, 1);
    assert_eq!(f.server.keys("src"), vec!["in/done/a.csv".to_owned()]);
}

#[tokio::test]
async fn an_event_from_another_bucket_is_skipped_untouched() {
    let f = fixture().await;
    let body = b"id\n1\n";
    let etag = f.server.put_object("dst", "in/a.csv", body).expect("seed");
    let event = s3_event(vec![record("dst", "in/a.csv", Some(&etag))]);
    let response = mover(&f, common::mover_config(8)).handle(&event, "t").await.expect("answered");
    assert_eq!(response.tally.skipped, 1);
    assert_eq!(f.server.keys("dst"), vec!["in/a.csv".to_owned()]);
}

#[tokio::test]
async fn a_missing_source_bucket_is_named() {
    let f = fixture().await;
    let config = MoverConfig { source_bucket: None, ..common::mover_config(8) };
    let event = s3_event(vec![record("no-such-source", "in/a.csv", None)]);
    let (kind, message) = mover_error(&mover(&f, config), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("no-such-source"), "{message}");
    assert!(f.server.keys("dst").is_empty());
}

#[tokio::test]
async fn a_missing_destination_bucket_is_named_and_the_source_kept() {
    let f = fixture().await;
    let config = MoverConfig { dest_bucket: "no-such-dest".into(), ..common::mover_config(8) };
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    let (kind, message) = mover_error(&mover(&f, config), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("no-such-dest"), "{message}");
    untouched(&f, "in/a.csv", body);
}

#[tokio::test]
async fn access_denied_reading_the_source_keeps_everything() {
    let f = fixture().await;
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    f.server.faults().deny("src", &["GetObject"]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("AccessDenied") && message.contains("s3://src/in/a.csv"), "{message}");
    f.server.faults().clear();
    untouched(&f, "in/a.csv", body);
}

#[tokio::test]
async fn access_denied_writing_the_destination_keeps_everything() {
    let f = fixture().await;
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    f.server.faults().deny("dst", &[]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("AccessDenied") && message.contains("s3://dst/out/a.csv"), "{message}");
    f.server.faults().clear();
    untouched(&f, "in/a.csv", body);
}

#[tokio::test]
async fn access_denied_deleting_the_source_is_reported_and_a_redelivery_finishes() {
    let f = fixture().await;
    let handler = mover(&f, common::mover_config(8));
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    f.server.faults().deny("src", &["DeleteObject"]);
    let (kind, message) = mover_error(&handler, &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("AccessDenied") && message.contains("deleting s3://src/in/a.csv"), "{message}");
    // Copied, not deleted: both hold the bytes.
    assert_eq!(data(&f, "src", "in/a.csv").as_deref(), Some(&body[..]));
    assert_eq!(data(&f, "dst", "out/a.csv").as_deref(), Some(&body[..]));
    f.server.faults().clear();
    handler.handle(&event, "redelivery").await.expect("moved on redelivery");
    moved(&f, "in/a.csv", "out/a.csv", body);
    assert_eq!(f.server.keys("dst"), vec!["out/a.csv".to_owned()]);
}

#[tokio::test]
async fn a_source_that_never_existed_is_a_reported_failure() {
    let f = fixture().await;
    let event = s3_event(vec![record("src", "in/ghost.csv", Some("0123456789abcdef0123456789abcdef"))]);
    let (kind, message) = mover_error(&mover(&f, common::mover_config(8)), &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("s3://src/in/ghost.csv is gone") && message.contains("does not hold it"), "{message}");
}

#[tokio::test]
async fn a_zero_byte_object_moves() {
    let f = fixture().await;
    mover(&f, common::mover_config(8)).handle(&put(&f, "in/empty", b""), "t").await.expect("moved");
    moved(&f, "in/empty", "out/empty", b"");
}

#[tokio::test]
async fn a_binary_object_moves_byte_identical() {
    let f = fixture().await;
    let body: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    assert!(body.contains(&0) && body.contains(&0xFF));
    mover(&f, common::mover_config(8)).handle(&put(&f, "in/blob.bin", &body), "t").await.expect("moved");
    moved(&f, "in/blob.bin", "out/blob.bin", &body);
}

#[tokio::test]
async fn throttling_is_retried_and_the_object_lands_once() {
    let f = fixture().await;
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    f.server.faults().fail_nth("CopyObject", 1, FaultKind::SlowDown);
    f.server.faults().fail_nth("CopyObject", 2, FaultKind::SlowDown);
    f.server.faults().fail_nth("DeleteObject", 1, FaultKind::SlowDown);
    mover(&f, common::mover_config(8)).handle(&event, "t").await.expect("moved after retries");
    assert_eq!(f.server.faults().pending_rules(), 0, "every fault fired");
    moved(&f, "in/a.csv", "out/a.csv", body);
    assert_eq!(f.server.counters().get("CopyObject").copied(), Some(3));
}

#[tokio::test]
async fn a_copy_answered_200_with_an_error_is_not_taken_for_success() {
    let f = fixture_with(1).await;
    let handler = mover(&f, common::mover_config(8));
    let body = b"id\n1\n";
    let event = put(&f, "in/a.csv", body);
    // Both the direct copy and the SDK's, to which the direct path hands an
    // unconfirmed copy, are answered 200 with an error.
    f.server.faults().fail_nth("CopyObject", 1, FaultKind::CopyError200);
    f.server.faults().fail_nth("CopyObject", 2, FaultKind::CopyError200);
    let (kind, message) = mover_error(&handler, &event).await;
    assert_eq!(kind, "MoveFailed");
    assert!(message.contains("InternalError"), "{message}");
    assert_eq!(data(&f, "src", "in/a.csv").as_deref(), Some(&body[..]), "no delete after an unconfirmed copy");
    assert_eq!(f.server.counters().get("DeleteObject").copied().unwrap_or(0), 0);
    handler.handle(&event, "redelivery").await.expect("moved on redelivery");
    moved(&f, "in/a.csv", "out/a.csv", body);
}

#[tokio::test]
async fn a_stale_event_for_an_overwritten_key_leaves_the_new_object() {
    let f = fixture().await;
    let stale = put(&f, "in/a.csv", b"id\nold\n");
    f.server.put_object("src", "in/a.csv", b"id\nnew\n").expect("overwrite");
    let response = mover(&f, common::mover_config(8)).handle(&stale, "t").await.expect("answered");
    assert_eq!(response.tally.skipped, 1);
    untouched(&f, "in/a.csv", b"id\nnew\n");
}

// ------------------------------------------------------------------- merge

fn merge_input() -> Value {
    json!({"source_bucket": "src", "source_prefix": "csvs/", "dest_bucket": "dst", "dest_prefix": "merged/",
           "run_id": "r1", "single_output": true})
}

fn with(mut input: Value, field: &str, value: Value) -> Value {
    input[field] = value;
    input
}

async fn generator_error(f: &S3Fixture, input: &Value) -> (String, String) {
    let err = batch_generator::handle(&f.client, input, &MergeConfig::default(), "req-1").await.expect_err("must fail");
    (err.0.error_type().to_owned(), err.to_string())
}

struct MergeRun {
    report: Value,
    outputs: Vec<Vec<u8>>,
    merged: Option<Vec<u8>>,
}

/// Runs the three handlers in order, as the state machine does.
async fn merge(f: &S3Fixture, input: Value) -> MergeRun {
    let generated =
        batch_generator::handle(&f.client, &input, &MergeConfig::default(), "req-1").await.expect("generated");
    let items: Vec<BatchItem> =
        serde_json::from_slice(&data(f, "dst", &generated.batches_key).expect("batches.json")).expect("items");
    for batch in items {
        let task = MergeTask {
            run_id: generated.run_id.clone(),
            source_bucket: generated.source_bucket.clone(),
            dest_bucket: generated.dest_bucket.clone(),
            run_prefix: generated.run_prefix.clone(),
            batch,
        };
        let payload = serde_json::to_value(&task).expect("task json");
        common::merger(&f.client, 8).handle(&payload).await.expect("batch merged");
    }
    let task = json!({"run_id": generated.run_id, "source_bucket": generated.source_bucket,
        "dest_bucket": generated.dest_bucket, "run_prefix": generated.run_prefix,
        "single_output": generated.single_output, "delete_sources": generated.delete_sources});
    let summary = results_aggregator::handle(&f.client, &task).await.expect("aggregated");
    let report = serde_json::from_slice(&data(f, "dst", &summary.report_key).expect("report")).expect("report json");
    let mut outputs = Vec::new();
    for key in f.server.keys("dst") {
        if key.starts_with(&format!("{}merged-", generated.run_prefix)) {
            outputs.push(data(f, "dst", &key).expect("output"));
        }
    }
    let merged = summary.merged_key.as_deref().and_then(|key| data(f, "dst", key));
    MergeRun { report, outputs, merged }
}

fn seed(f: &S3Fixture, files: &[(&str, &[u8])]) {
    for (name, body) in files {
        f.server.put_object("src", &format!("csvs/{name}"), body).expect("seed");
    }
}

#[tokio::test]
async fn execution_input_missing_a_field_names_it() {
    let f = fixture().await;
    for field in ["source_bucket", "source_prefix", "dest_bucket"] {
        let mut input = merge_input();
        input.as_object_mut().expect("object").remove(field);
        let (kind, message) = generator_error(&f, &input).await;
        assert_eq!(kind, "InvalidInput", "{field}");
        assert!(message.contains(&format!("`{field}`")), "{field}: {message}");
    }
    assert!(f.server.keys("dst").is_empty(), "nothing written");
}

#[tokio::test]
async fn execution_input_with_wrong_types_names_the_field() {
    let f = fixture().await;
    let cases = [
        ("batch_size", json!("10")),
        ("batch_size", json!(2.5)),
        ("batch_size", json!(-1)),
        ("source_bucket", json!(["src"])),
        ("source_prefix", json!(5)),
        ("single_output", json!("yes")),
        ("delete_sources", json!(1)),
        ("run_id", json!({"id": 1})),
    ];
    for (field, value) in cases {
        let (kind, message) = generator_error(&f, &with(merge_input(), field, value.clone())).await;
        assert_eq!(kind, "InvalidInput", "{field}={value}");
        assert!(message.contains(&format!("`{field}`")), "{field}={value}: {message}");
    }
}

#[tokio::test]
async fn batch_size_zero_or_a_billion_is_refused_with_the_range() {
    let f = fixture().await;
    for size in [json!(0), json!(1_000_000_000u64)] {
        let (kind, message) = generator_error(&f, &with(merge_input(), "batch_size", size.clone())).await;
        assert_eq!(kind, "InvalidInput");
        assert!(message.contains("`batch_size`") && message.contains("100000"), "{size}: {message}");
    }
}

#[tokio::test]
async fn execution_input_that_is_not_an_object_is_refused() {
    let f = fixture().await;
    for input in [json!([1]), json!("s3://src/csvs/"), json!(null)] {
        let (kind, _) = generator_error(&f, &input).await;
        assert_eq!(kind, "InvalidInput", "{input}");
    }
}

#[tokio::test]
async fn bad_bucket_names_and_run_ids_are_refused_before_any_request() {
    let f = fixture().await;
    for (field, value) in [("source_bucket", "Bad_Bucket"), ("dest_bucket", "x"), ("run_id", "a/../b")] {
        let (kind, message) = generator_error(&f, &with(merge_input(), field, json!(value))).await;
        assert_eq!(kind, "InvalidInput");
        assert!(message.contains(&format!("`{field}`")), "{field}: {message}");
    }
    assert_eq!(f.server.counters().values().sum::<u64>(), 0, "no request sent");
}

#[tokio::test]
async fn step_inputs_of_the_wrong_shape_are_invalid_input() {
    let f = fixture().await;
    let err = common::merger(&f.client, 8).handle(&json!({"batch_id": 0})).await.expect_err("not a task");
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("missing field"), "{err}");
    let err = results_aggregator::handle(&f.client, &json!({"run_id": 5})).await.expect_err("not a task");
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[tokio::test]
async fn a_missing_merge_source_bucket_is_named() {
    let f = fixture().await;
    let (kind, message) = generator_error(&f, &with(merge_input(), "source_bucket", json!("no-such-source"))).await;
    assert_ne!(kind, "TransientS3Error", "retrying cannot help");
    assert!(message.contains("no-such-source"), "{message}");
}

#[tokio::test]
async fn a_missing_merge_destination_bucket_is_named() {
    let f = fixture().await;
    seed(&f, &[("a.csv", b"id\n1\n")]);
    let (kind, message) = generator_error(&f, &with(merge_input(), "dest_bucket", json!("no-such-dest"))).await;
    assert_ne!(kind, "TransientS3Error", "retrying cannot help");
    assert!(message.contains("no-such-dest"), "{message}");
    assert_eq!(data(&f, "src", "csvs/a.csv").as_deref(), Some(&b"id\n1\n"[..]), "source untouched");
}

#[tokio::test]
async fn an_empty_prefix_is_an_error_naming_the_url() {
    let f = fixture().await;
    let (kind, message) = generator_error(&f, &merge_input()).await;
    assert_eq!(kind, "EmptyPrefix");
    assert!(message.contains("s3://src/csvs/"), "{message}");
}

#[tokio::test]
async fn zero_byte_and_header_only_files_add_no_rows_and_are_counted() {
    let f = fixture().await;
    seed(&f, &[("0.csv", b"id,v\n1,a\n"), ("1.csv", b""), ("2.csv", b"id,v\n"), ("3.csv", b"id,v\r\n2,b")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.merged.as_deref(), Some(&b"id,v\n1,a\n2,b\n"[..]));
    assert_eq!(
        (&run.report["merged_files"], &run.report["empty_files"], &run.report["header_only_files"]),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(run.report["total_files"], 4);
}

#[tokio::test]
async fn a_set_of_header_only_files_merges_to_the_header_alone() {
    let f = fixture().await;
    seed(&f, &[("0.csv", b"id,v\n"), ("1.csv", b"id,v\n"), ("2.csv", b"id,v")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.report["rows"], 0);
    assert_eq!(run.report["header_only_files"], 3);
    assert_eq!(run.report["skipped_files"], 0);
    assert_eq!(run.merged.as_deref(), Some(&b"id,v\n"[..]));
}

#[tokio::test]
async fn a_binary_file_among_csvs_is_skipped_and_reported() {
    let f = fixture().await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01";
    // Named .csv, as a mis-exported file would be (other suffixes are not listed).
    seed(&f, &[("0.csv", b"id,v\n1,a\n"), ("1.csv", png), ("2.csv", b"id,v\n2,b\n")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.merged.as_deref(), Some(&b"id,v\n1,a\n2,b\n"[..]));
    assert_eq!(run.report["total_files"], 3);
    assert_eq!(run.report["skipped"][0]["key"], "csvs/1.csv", "{}", run.report);
    assert!(run.report["skipped"][0]["reason"].as_str().is_some_and(|r| r.contains("differs")), "{}", run.report);
}

#[tokio::test]
async fn invalid_utf8_in_a_row_passes_through_byte_identical() {
    let f = fixture().await;
    // Latin-1 exports are common; the merge is byte-oriented and must not
    // "repair" them.
    seed(&f, &[("0.csv", b"id,name\n1,Jos\xE9\n"), ("1.csv", b"id,name\n2,\xFF\xFE\n")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.merged.as_deref(), Some(&b"id,name\n1,Jos\xE9\n2,\xFF\xFE\n"[..]));
}

#[tokio::test]
async fn a_csv_that_is_one_huge_line_is_skipped_with_a_short_reason() {
    let f = fixture().await;
    let huge = vec![b'x'; 8 << 20];
    seed(&f, &[("0.csv", b"id,v\n1,a\n"), ("1.csv", &huge), ("2.csv", b"id,v\n2,b\n")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.merged.as_deref(), Some(&b"id,v\n1,a\n2,b\n"[..]));
    let reason = run.report["skipped"][0]["reason"].as_str().expect("reason").to_owned();
    assert!(reason.len() < 600 && reason.contains("(8388608 bytes)"), "{} bytes: {}", reason.len(), &reason[..200]);
}

#[tokio::test]
async fn a_huge_single_row_is_merged_whole() {
    let f = fixture().await;
    let mut big = b"id,v\n2,".to_vec();
    big.extend(std::iter::repeat_n(b'y', 12 << 20));
    seed(&f, &[("0.csv", b"id,v\n1,a\n"), ("1.csv", &big)]);
    let run = merge(&f, merge_input()).await;
    let mut expected = b"id,v\n1,a\n".to_vec();
    expected.extend_from_slice(&big[5..]);
    expected.push(b'\n');
    assert_eq!(run.outputs.len(), 1);
    assert!(run.merged.as_deref() == Some(&expected[..]), "12 MiB row must arrive whole");
}

#[tokio::test]
async fn a_file_cut_inside_a_quoted_field_is_skipped_and_the_next_rows_survive() {
    let f = fixture().await;
    seed(&f, &[("0.csv", b"id,v\n1,a\n"), ("1.csv", b"id,v\n2,\"trunc"), ("2.csv", b"id,v\n3,c\n")]);
    let run = merge(&f, merge_input()).await;
    assert_eq!(run.merged.as_deref(), Some(&b"id,v\n1,a\n3,c\n"[..]));
    assert_eq!(run.report["skipped"][0]["key"], "csvs/1.csv");
    let reason = run.report["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("inside a quoted field"), "{reason}");
}

// ----------------------------------------------------------- configuration

fn config_error<T: std::fmt::Debug>(result: Result<T, ConfigError>) -> String {
    result.expect_err("invalid configuration").to_string()
}

#[test]
fn bad_configuration_values_name_the_variable_and_the_value() {
    let base = || vec![("DEST_BUCKET", "dst-bucket")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "DEST_BUCKET is required"),
        (vec![("DEST_BUCKET", "Bad_Bucket")], "DEST_BUCKET=\"Bad_Bucket\""),
        ([base(), vec![("SOURCE_BUCKET", "a..b")]].concat(), "SOURCE_BUCKET=\"a..b\""),
        ([base(), vec![("DELETE_SOURCE", "maybe")]].concat(), "DELETE_SOURCE=\"maybe\""),
        ([base(), vec![("KEEP_SOURCE_PREFIX", "2")]].concat(), "KEEP_SOURCE_PREFIX=\"2\""),
        ([base(), vec![("FETCH_CONCURRENCY", "0")]].concat(), "FETCH_CONCURRENCY=\"0\""),
        ([base(), vec![("FETCH_CONCURRENCY", "lots")]].concat(), "FETCH_CONCURRENCY=\"lots\""),
        ([base(), vec![("MULTIPART_COPY_THRESHOLD", "1")]].concat(), "MULTIPART_COPY_THRESHOLD=\"1\""),
    ];
    for (vars, expected) in cases {
        let message = config_error(MoverConfig::from(&env_of(&vars)));
        assert!(message.contains(expected), "{vars:?}: {message}");
    }
    for (vars, expected) in [
        (vec![("BATCH_SIZE", "0")], "BATCH_SIZE=\"0\""),
        (vec![("BATCH_SIZE", "1000000000")], "BATCH_SIZE=\"1000000000\""),
        (vec![("FETCH_CONCURRENCY", "-3")], "FETCH_CONCURRENCY=\"-3\""),
    ] {
        let message = config_error(MergeConfig::from(&env_of(&vars)));
        assert!(message.contains(expected), "{vars:?}: {message}");
    }
    let message = config_error(LogFormat::from(&env_of(&[("LOG_FORMAT", "xml")])));
    assert!(message.contains("LOG_FORMAT=\"xml\""), "{message}");
}
