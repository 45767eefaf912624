//! S3 Batch Operations "Invoke AWS Lambda function" tasks through the
//! mover's handler, in-process against local-s3 over HTTP: both invocation
//! schemas, odd keys, and each task's result code checked against the bytes
//! that landed (or stayed) in the buckets.

use local_s3::FaultKind;
use mover::Handler;
use s3mm_core::keys::{encode_event_key, encode_manifest_key};
use s3mm_core::{Mover, MoverConfig};
use s3mm_test_support::S3Fixture;
use serde_json::{Value, json};

fn config(dest_prefix: &str) -> MoverConfig {
    MoverConfig {
        dest_bucket: "dst".into(),
        dest_prefix: dest_prefix.into(),
        source_prefix: "incoming/".into(),
        keep_source_prefix: false,
        source_bucket: Some("src".into()),
        delete_source: true,
        multipart_copy_threshold: s3mm_core::config::DEFAULT_MULTIPART_COPY_THRESHOLD,
        fetch_concurrency: 8,
        sdk_only: false,
    }
}

async fn fixture(dest_prefix: &str) -> (S3Fixture, Handler) {
    let s3 = S3Fixture::start(&["src", "dst"]).await;
    let handler = Handler::new(Mover::new(s3.client.clone(), config(dest_prefix)));
    (s3, handler)
}

/// A task as Batch Operations sends it: the key as the manifest held it.
fn task(schema: &str, id: &str, encoded_key: &str) -> Value {
    match schema {
        "1.0" => json!({"taskId": id, "s3Key": encoded_key, "s3VersionId": null, "s3BucketArn": "arn:aws:s3:::src"}),
        _ => json!({"taskId": id, "s3Key": encoded_key, "s3VersionId": null, "s3Bucket": "src"}),
    }
}

fn invocation(schema: &str, tasks: Vec<Value>) -> Value {
    let mut job = json!({"id": "job-1"});
    if schema == "2.0" {
        job["userArguments"] = json!({"note": "backfill"});
    }
    json!({"invocationSchemaVersion": schema, "invocationId": format!("inv-{schema}"), "job": job, "tasks": tasks})
}

/// `(taskId, resultCode, resultString)` of every result, after checking
/// the response's envelope.
fn results(response: &Value, schema: &str) -> Vec<(String, String, String)> {
    assert_eq!(response["invocationSchemaVersion"], schema);
    assert_eq!(response["invocationId"], format!("inv-{schema}"));
    assert_eq!(response["treatMissingKeysAs"], "PermanentFailure");
    response["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap_or_else(|| panic!("{name} in {r}")).to_owned();
            (field("taskId"), field("resultCode"), field("resultString"))
        })
        .collect()
}

const ODD_KEYS: &[&str] = &[
    "with space.csv",
    "literal+plus.csv",
    "percent%sign.csv",
    "percent%2B.csv",
    "café/日本.csv",
    "q?a&b#c=d.csv",
    "double//slash.csv",
    "emoji😀 x.csv",
];

#[tokio::test]
async fn both_schemas_move_odd_keys_however_the_manifest_encoded_them() {
    let (s3, handler) = fixture("archive/").await;
    let mut keys: Vec<String> = ODD_KEYS.iter().map(|k| format!("incoming/{k}")).collect();
    // S3's longest key (1,024 bytes); "archive/" is shorter than "incoming/".
    keys.push(format!("incoming/{}", "k".repeat(1024 - "incoming/".len())));
    for schema in ["1.0", "2.0"] {
        for key in &keys {
            s3.server.put_object("src", key, format!("{schema} {key}").as_bytes()).expect("put");
        }
        // As `s3mm backfill` writes them (%20, %2B) and as S3 Inventory does
        // (a space as +): both read back to the same key.
        let tasks: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let encoded = if i % 2 == 0 { encode_manifest_key(key) } else { encode_event_key(key) };
                task(schema, &format!("t{i}"), &encoded)
            })
            .collect();
        let response = handler.handle(&invocation(schema, tasks), "req").await.expect("answered");
        let got = results(&response.body, schema);
        assert_eq!(got.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            let dest = format!("archive/{}", &key["incoming/".len()..]);
            assert_eq!(got[i].0, format!("t{i}"));
            assert_eq!(
                (got[i].1.as_str(), got[i].2.as_str()),
                ("Succeeded", format!("moved to s3://dst/{dest}").as_str())
            );
            let landed = s3.server.object("dst", &dest).unwrap_or_else(|| panic!("{dest} landed"));
            assert_eq!(landed.data.as_ref(), format!("{schema} {key}").as_bytes());
            assert!(s3.server.object("src", key).is_none(), "{key} left the source");
        }
        assert_eq!(response.tally.moved, keys.len());
    }
}

#[tokio::test]
async fn a_rerun_task_succeeds_as_already_moved_and_outside_keys_are_skipped() {
    let (s3, handler) = fixture("archive/").await;
    s3.server.put_object("src", "incoming/a.csv", b"a").expect("put");
    s3.server.put_object("src", "elsewhere/b.csv", b"b").expect("put");
    let event = invocation("2.0", vec![task("2.0", "a", "incoming/a.csv"), task("2.0", "b", "elsewhere/b.csv")]);
    let first = results(&handler.handle(&event, "req").await.expect("answered").body, "2.0");
    assert_eq!(first[0].1, "Succeeded");
    assert_eq!(
        (first[1].1.as_str(), first[1].2.as_str()),
        ("Succeeded", "skipped: key is not under SOURCE_PREFIX \"incoming/\"")
    );
    // Batch Operations may run a task again (a redriven job, a retry).
    let again = results(&handler.handle(&event, "req").await.expect("answered").body, "2.0");
    assert_eq!(again[0].1, "Succeeded");
    assert!(again[0].2.starts_with("already moved: s3://dst/archive/a.csv"), "{}", again[0].2);
    assert_eq!(s3.server.object("dst", "archive/a.csv").expect("a").data.as_ref(), b"a");
    assert_eq!(s3.server.object("src", "elsewhere/b.csv").expect("b kept").data.as_ref(), b"b");
}

#[tokio::test]
async fn missing_sources_bad_keys_and_overlong_keys_fail_permanently_and_lose_nothing() {
    let (s3, handler) = fixture("archive/a-much-longer-destination-prefix/").await;
    let long = format!("incoming/{}", "k".repeat(1024 - "incoming/".len()));
    s3.server.put_object("src", &long, b"long").expect("put");
    s3.server.put_object("src", "incoming/fine.csv", b"fine").expect("put");
    let event = invocation(
        "1.0",
        vec![
            task("1.0", "gone", "incoming/never-there.csv"),
            task("1.0", "bad", "incoming/bad%zz.csv"),
            task("1.0", "long", &encode_manifest_key(&long)),
            task("1.0", "fine", "incoming/fine.csv"),
        ],
    );
    let got = results(&handler.handle(&event, "req").await.expect("answered").body, "1.0");
    let codes: Vec<&str> = got.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(codes, ["PermanentFailure", "PermanentFailure", "PermanentFailure", "Succeeded"]);
    assert!(got[0].2.contains("s3://src/incoming/never-there.csv does not exist"), "{}", got[0].2);
    assert!(got[1].2.contains("incoming/bad%zz.csv"), "{}", got[1].2);
    assert!(got[2].2.contains("over S3's 1024-byte limit"), "{}", got[2].2);
    assert_eq!(s3.server.object("src", &long).expect("long kept").data.as_ref(), b"long");
    assert_eq!(
        s3.server.object("dst", "archive/a-much-longer-destination-prefix/fine.csv").expect("fine").data.as_ref(),
        b"fine"
    );
}

#[tokio::test]
async fn a_denied_delete_fails_permanently_with_the_copy_made_and_the_source_kept() {
    let (s3, handler) = fixture("archive/").await;
    s3.server.put_object("src", "incoming/d.csv", b"d").expect("put");
    s3.server.faults().deny("src", &["DeleteObject"]);
    let event = invocation("2.0", vec![task("2.0", "d", "incoming/d.csv")]);
    let got = results(&handler.handle(&event, "req").await.expect("answered").body, "2.0");
    assert_eq!(got[0].1, "PermanentFailure");
    assert!(got[0].2.contains("AccessDenied"), "{}", got[0].2);
    assert_eq!(s3.server.object("src", "incoming/d.csv").expect("source kept").data.as_ref(), b"d");
    assert_eq!(s3.server.object("dst", "archive/d.csv").expect("copy made").data.as_ref(), b"d");
}

#[tokio::test]
async fn a_throttled_copy_is_a_temporary_failure_and_its_redrive_succeeds() {
    let (s3, handler) = fixture("archive/").await;
    s3.server.put_object("src", "incoming/t.csv", b"t").expect("put");
    s3.server.faults().set_rate(1.0, &[FaultKind::SlowDown]);
    let event = invocation("1.0", vec![task("1.0", "t", "incoming/t.csv")]);
    let got = results(&handler.handle(&event, "req").await.expect("answered").body, "1.0");
    assert_eq!(got[0].1, "TemporaryFailure");
    assert!(got[0].2.contains("SlowDown"), "{}", got[0].2);
    assert_eq!(s3.server.object("src", "incoming/t.csv").expect("source kept").data.as_ref(), b"t");
    assert!(s3.server.object("dst", "archive/t.csv").is_none());
    // Batch Operations redrives temporary failures before the job completes.
    s3.server.faults().clear();
    let again = results(&handler.handle(&event, "req").await.expect("answered").body, "1.0");
    assert_eq!(again[0].1, "Succeeded");
    assert_eq!(s3.server.object("dst", "archive/t.csv").expect("moved").data.as_ref(), b"t");
    assert!(s3.server.object("src", "incoming/t.csv").is_none());
}
