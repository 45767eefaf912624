//! The mover's handler in-process against local-s3 over HTTP: events in the
//! shapes S3, SQS and EventBridge deliver, bytes checked in the buckets.

use mover::{Handler, HandlerError};
use s3mm_core::keys::encode_event_key;
use s3mm_core::{Mover, MoverConfig};
use s3mm_test_support::S3Fixture;
use serde_json::{Value, json};

struct Fixture {
    s3: S3Fixture,
    handler: Handler,
}

fn config() -> MoverConfig {
    MoverConfig {
        dest_bucket: "dst".into(),
        dest_prefix: "archive/".into(),
        source_prefix: "incoming/".into(),
        keep_source_prefix: false,
        source_bucket: Some("src".into()),
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: 8,
        sdk_only: false,
    }
}

async fn fixture() -> Fixture {
    let s3 = S3Fixture::start(&["src", "dst"]).await;
    let handler = Handler::new(Mover::new(s3.client.clone(), config()));
    Fixture { s3, handler }
}

fn put(f: &Fixture, key: &str, body: &[u8]) -> Value {
    let etag = f.s3.server.put_object("src", key, body).expect("put");
    record("src", key, &etag, body.len())
}

fn record(bucket: &str, key: &str, etag: &str, size: usize) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-24T12:00:00.000Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": encode_event_key(key), "size": size, "eTag": etag.trim_matches('"')}}
    })
}

fn s3_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

fn sqs_event(messages: Vec<(&str, String)>) -> Value {
    let records: Vec<Value> = messages
        .into_iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": "h", "body": body, "eventSource": "aws:sqs"}))
        .collect();
    json!({ "Records": records })
}

const ODD_KEYS: &[&str] = &[
    "with space.csv",
    "literal+plus.csv",
    "percent%sign.csv",
    "percent%2B.csv",
    "café/日本.csv",
    "q?a&b#c=d.csv",
    "/leading.csv",
    "double//slash.csv",
    "emoji😀 x.csv",
];

#[tokio::test]
async fn s3_event_moves_every_odd_key() {
    let f = fixture().await;
    let records: Vec<Value> =
        ODD_KEYS.iter().map(|k| put(&f, &format!("incoming/{k}"), format!("row of {k}\n").as_bytes())).collect();
    let response = f.handler.handle(&s3_event(records), "req-1").await.expect("all moved");
    assert_eq!(response.tally.moved, ODD_KEYS.len());
    for key in ODD_KEYS {
        let landed = f.s3.server.object("dst", &format!("archive/{key}")).unwrap_or_else(|| panic!("{key} landed"));
        assert_eq!(landed.data.as_ref(), format!("row of {key}\n").as_bytes());
        assert!(f.s3.server.object("src", &format!("incoming/{key}")).is_none());
    }
}

#[tokio::test]
async fn sqs_batch_reports_only_the_poisoned_message() {
    let f = fixture().await;
    let a = s3_event(vec![put(&f, "incoming/a.csv", b"a")]).to_string();
    let b = s3_event(vec![put(&f, "incoming/b c.csv", b"b")]).to_string();
    let ghost = s3_event(vec![record("src", "incoming/ghost.csv", "0123", 1)]).to_string();
    let event =
        sqs_event(vec![("m-a", a), ("m-poison", "{\"not\": \"an event\"}".into()), ("m-b", b), ("m-ghost", ghost)]);
    let response = f.handler.handle(&event, "req-2").await.expect("batch answered");
    let failures: Vec<&str> = response.body["batchItemFailures"]
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id"))
        .collect();
    assert_eq!(failures, vec!["m-poison", "m-ghost"]);
    assert_eq!(f.s3.server.object("dst", "archive/a.csv").expect("a").data.as_ref(), b"a");
    assert_eq!(f.s3.server.object("dst", "archive/b c.csv").expect("b").data.as_ref(), b"b");
}

#[tokio::test]
async fn eventbridge_event_moves_its_object() {
    let f = fixture().await;
    let etag = f.s3.server.put_object("src", "incoming/x+y z.csv", b"eb").expect("put");
    let event = json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": "src"}, "object": {"key": "incoming/x+y z.csv", "size": 2, "etag": etag.trim_matches('"')}}});
    f.handler.handle(&event, "req-3").await.expect("moved");
    assert_eq!(f.s3.server.object("dst", "archive/x+y z.csv").expect("landed").data.as_ref(), b"eb");
}

/// DeliveryMode=sqs with existing buckets: an EventBridge rule puts the
/// "Object Created" events in the queue, one per message.
#[tokio::test]
async fn sqs_batch_of_eventbridge_events() {
    let f = fixture().await;
    let eventbridge = |key: &str, etag: &str, size: usize| {
        json!({"version": "0", "id": "e", "source": "aws.s3", "detail-type": "Object Created", "region": "us-east-1",
            "detail": {"bucket": {"name": "src"}, "object": {"key": key, "size": size, "etag": etag}}})
        .to_string()
    };
    let mut messages = Vec::new();
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let body = format!("eventbridge row {i}\n");
        let etag = f.s3.server.put_object("src", &format!("incoming/{key}"), body.as_bytes()).expect("put");
        messages.push((format!("m{i}"), eventbridge(&format!("incoming/{key}"), etag.trim_matches('"'), body.len())));
    }
    messages.push(("m-gone".into(), eventbridge("incoming/never uploaded.csv", "0123", 1)));
    let event = sqs_event(messages.iter().map(|(id, body)| (id.as_str(), body.clone())).collect());
    let response = f.handler.handle(&event, "req-eb").await.expect("batch answered");
    assert_eq!(response.body, json!({"batchItemFailures": [{"itemIdentifier": "m-gone"}]}));
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let landed = f.s3.server.object("dst", &format!("archive/{key}")).unwrap_or_else(|| panic!("{key} landed"));
        assert_eq!(landed.data.as_ref(), format!("eventbridge row {i}\n").as_bytes(), "{key}");
        assert!(f.s3.server.object("src", &format!("incoming/{key}")).is_none(), "{key} left in the source");
    }
}

#[tokio::test]
async fn duplicates_late_events_and_overwrites() {
    let f = fixture().await;
    let event = s3_event(vec![put(&f, "incoming/d.csv", b"v1")]);
    f.handler.handle(&event, "first").await.expect("moved");
    let again = f.handler.handle(&event, "again").await.expect("duplicate is a success");
    assert_eq!(again.tally.already_moved, 1);

    // Twice at once.
    let event = s3_event(vec![put(&f, "incoming/e.csv", b"e")]);
    let (one, two) = tokio::join!(f.handler.handle(&event, "x"), f.handler.handle(&event, "y"));
    let (one, two) = (one.expect("one"), two.expect("two"));
    let succeeded = one.tally.moved + one.tally.already_moved + two.tally.moved + two.tally.already_moved;
    assert_eq!(succeeded, 2, "both deliveries succeed");
    assert_eq!(one.tally.failed + two.tally.failed, 0);
    assert_eq!(f.s3.server.object("dst", "archive/e.csv").expect("e").data.as_ref(), b"e");
    assert!(f.s3.server.object("src", "incoming/e.csv").is_none());

    // Overwritten since the event: the newer object stays where it is.
    let stale = s3_event(vec![put(&f, "incoming/f.csv", b"old")]);
    f.s3.server.put_object("src", "incoming/f.csv", b"newer").expect("overwrite");
    let response = f.handler.handle(&stale, "stale").await.expect("skipped, not failed");
    assert_eq!(response.tally.skipped, 1);
    assert_eq!(f.s3.server.object("src", "incoming/f.csv").expect("kept").data.as_ref(), b"newer");
    assert!(f.s3.server.object("dst", "archive/f.csv").is_none());

    // Never existed: reported.
    let ghost = s3_event(vec![record("src", "incoming/never.csv", "abcd", 1)]);
    let err = f.handler.handle(&ghost, "ghost").await.expect_err("reported");
    assert!(matches!(err, HandlerError::Failed { .. }));
    assert!(err.to_string().contains("incoming/never.csv"), "{err}");
}

#[tokio::test]
async fn filters_skip_without_touching() {
    let f = fixture().await;
    f.s3.server.create_bucket("elsewhere").expect("bucket");
    let etag = f.s3.server.put_object("elsewhere", "incoming/a.csv", b"a").expect("put");
    let outside = put(&f, "other/b.csv", b"b");
    let event = s3_event(vec![record("elsewhere", "incoming/a.csv", &etag, 1), outside]);
    let response = f.handler.handle(&event, "filters").await.expect("skips are not failures");
    assert_eq!(response.tally.skipped, 2);
    assert!(f.s3.server.object("elsewhere", "incoming/a.csv").is_some());
    assert!(f.s3.server.object("src", "other/b.csv").is_some());
    assert!(f.s3.server.keys("dst").is_empty());
}

#[tokio::test]
async fn test_events_and_malformed_payloads() {
    let f = fixture().await;
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "src"});
    assert_eq!(f.handler.handle(&test_event, "t").await.expect("ack").tally, Default::default());
    let err = f.handler.handle(&json!({"detail": 1}), "bad").await.expect_err("malformed");
    assert_eq!(err.error_type(), "MalformedEvent");
    assert!(err.to_string().contains("[detail]"), "{err}");
}
