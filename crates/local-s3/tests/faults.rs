//! Fault injection, latency, counters and the journal, observed through
//! aws-sdk-s3 with retries disabled (unless a test is about retries).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{client_no_retry, env, status_and_code};
use local_s3::{FaultKind, JournalEntry};

async fn put(client: &aws_sdk_s3::Client, key: &str, body: &'static [u8]) -> Result<(), (Option<u16>, Option<String>)> {
    client
        .put_object()
        .bucket("bkt")
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| status_and_code(&e))
}

#[tokio::test]
async fn slow_down_hits_exactly_the_nth_put() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let client = client_no_retry(&e.s3);
    put(&client, "before", b"0").await.unwrap();
    e.s3.reset_counters();
    e.s3.faults().fail_nth("PutObject", 2, FaultKind::SlowDown);
    put(&client, "k1", b"1").await.unwrap();
    assert_eq!(put(&client, "k2", b"2").await, Err((Some(503), Some("SlowDown".into()))));
    put(&client, "k3", b"3").await.unwrap();
    assert!(e.s3.object("bkt", "k2").is_none(), "a throttled request is not processed");
    assert_eq!(e.s3.keys("bkt"), ["before", "k1", "k3"]);
    assert_eq!(e.s3.counters().get("PutObject"), Some(&3));
    assert_eq!(e.s3.faults_injected().get("SlowDown"), Some(&1));
    assert_eq!(e.s3.faults().pending_rules(), 0);
}

#[tokio::test]
async fn internal_error_hits_the_first_get_only() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.put_object("bkt", "k", b"data").unwrap();
    let client = client_no_retry(&e.s3);
    e.s3.faults().fail_nth("GetObject", 1, FaultKind::InternalError);
    let err = client.get_object().bucket("bkt").key("k").send().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(500), Some("InternalError".into())));
    let ok = client.get_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(ok.body.collect().await.unwrap().into_bytes().as_ref(), b"data");
    assert_eq!(e.s3.counters().get("GetObject"), Some(&2));
}

#[tokio::test]
async fn dropped_connection_still_applies_the_write() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let client = client_no_retry(&e.s3);
    e.s3.faults().fail_nth("PutObject", 1, FaultKind::DropConnection);
    let err =
        client.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"applied")).send().await.unwrap_err();
    assert!(err.raw_response().is_none(), "no response may arrive: {err:?}");
    assert!(matches!(err, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)), "{err:?}");
    assert_eq!(e.s3.object("bkt", "k").unwrap().data.as_ref(), b"applied");
    assert_eq!(e.s3.faults_injected().get("DropConnection"), Some(&1));
    // The next request on a fresh connection works.
    put(&client, "k2", b"2").await.unwrap();
}

#[tokio::test]
async fn copy_error_200_is_an_error_to_the_sdk_but_the_copy_happened() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.put_object("bkt", "src", b"source").unwrap();
    let client = client_no_retry(&e.s3);
    e.s3.faults().fail_nth("CopyObject", 1, FaultKind::CopyError200);
    let err = client.copy_object().bucket("bkt").key("dst").copy_source("bkt/src").send().await.unwrap_err();
    // aws-sdk-s3 inspects the body of a 200 CopyObject response and turns
    // an <Error> document into an error.
    assert_eq!(status_and_code(&err), (Some(200), Some("InternalError".into())));
    assert_eq!(e.s3.object("bkt", "dst").unwrap().data.as_ref(), b"source");
    assert_eq!(e.s3.faults_injected().get("CopyError200"), Some(&1));
}

#[tokio::test]
async fn copy_error_200_is_retried_by_the_default_retry_policy() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.put_object("bkt", "src", b"source").unwrap();
    e.s3.faults().fail_nth("CopyObject", 1, FaultKind::CopyError200);
    let out = e.client.copy_object().bucket("bkt").key("dst").copy_source("bkt/src").send().await.unwrap();
    // aws-sdk-s3 lists InternalError among the transient error codes of S3
    // operations, so the 200-with-error is retried like a 500.
    assert!(out.copy_object_result().and_then(|r| r.e_tag()).is_some());
    assert_eq!(e.s3.counters().get("CopyObject"), Some(&2));
    assert_eq!(e.s3.object("bkt", "dst").unwrap().data.as_ref(), b"source");
}

#[tokio::test]
async fn default_retries_absorb_a_single_slow_down() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.faults().fail_nth("PutObject", 1, FaultKind::SlowDown);
    put(&e.client, "k", b"v").await.unwrap();
    assert_eq!(e.s3.counters().get("PutObject"), Some(&2));
    assert_eq!(e.s3.object("bkt", "k").unwrap().data.as_ref(), b"v");
}

#[tokio::test]
async fn copy_error_200_on_upload_part_copy() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.put_object("bkt", "src", b"0123456789").unwrap();
    let client = client_no_retry(&e.s3);
    let created = client.create_multipart_upload().bucket("bkt").key("dst").send().await.unwrap();
    let id = created.upload_id().unwrap();
    e.s3.faults().fail_nth("UploadPartCopy", 1, FaultKind::CopyError200);
    let copy = || {
        client
            .upload_part_copy()
            .bucket("bkt")
            .key("dst")
            .upload_id(id)
            .part_number(1)
            .copy_source("bkt/src")
            .copy_source_range("bytes=2-5")
            .send()
    };
    let err = copy().await.unwrap_err();
    assert_eq!(status_and_code(&err), (Some(200), Some("InternalError".into())));
    // The part was stored anyway: listing it shows its size.
    let parts = client.list_parts().bucket("bkt").key("dst").upload_id(id).send().await.unwrap();
    assert_eq!(parts.parts().first().and_then(|p| p.size()), Some(4));
    let etag = copy().await.unwrap().copy_part_result().unwrap().e_tag().unwrap().to_owned();
    client
        .complete_multipart_upload()
        .bucket("bkt")
        .key("dst")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(e.s3.object("bkt", "dst").unwrap().data.as_ref(), b"2345");
}

#[tokio::test]
async fn random_faults_follow_the_rate_and_can_be_cleared() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let client = client_no_retry(&e.s3);
    e.s3.faults().set_rate(1.0, &[FaultKind::InternalError]);
    for i in 0..5 {
        let err = put(&client, &format!("k{i}"), b"x").await.unwrap_err();
        assert_eq!(err, (Some(500), Some("InternalError".into())));
    }
    // CopyError200 never applies to non-copy requests.
    e.s3.faults().set_rate(1.0, &[FaultKind::CopyError200]);
    put(&client, "plain", b"x").await.unwrap();
    e.s3.faults().clear();
    put(&client, "after", b"x").await.unwrap();
    assert_eq!(e.s3.keys("bkt"), ["after", "plain"]);
    assert_eq!(e.s3.faults_injected().get("InternalError"), Some(&5));
}

#[tokio::test]
async fn latency_delays_each_request() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    e.s3.faults().set_latency(Duration::from_millis(150), Duration::from_millis(50));
    let started = Instant::now();
    put(&e.client, "k", b"x").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    e.s3.faults().clear();
}

#[tokio::test]
async fn journal_records_requests_in_order() {
    let e = env().await;
    e.s3.create_bucket("bkt").unwrap();
    let client = client_no_retry(&e.s3);
    put(&client, "unjournaled", b"x").await.unwrap();
    e.s3.enable_journal();
    e.s3.faults().fail_nth("DeleteObject", 1, FaultKind::SlowDown);
    put(&client, "a b", b"x").await.unwrap();
    client.delete_object().bucket("bkt").key("a b").send().await.unwrap_err();
    client.get_object().bucket("bkt").key("missing").send().await.unwrap_err();
    let entry = |seq, operation: &str, key: &str, status, fault| JournalEntry {
        seq,
        operation: operation.to_owned(),
        bucket: "bkt".to_owned(),
        key: key.to_owned(),
        status,
        fault,
    };
    assert_eq!(
        e.s3.journal(),
        [
            entry(1, "PutObject", "a b", 200, None),
            entry(2, "DeleteObject", "a b", 503, Some(FaultKind::SlowDown)),
            entry(3, "GetObject", "missing", 404, None),
        ]
    );
}

#[tokio::test]
#[should_panic(expected = "only applies to CopyObject")]
async fn copy_error_200_rules_on_other_operations_are_rejected() {
    let e = env().await;
    e.s3.faults().fail_nth("PutObject", 1, FaultKind::CopyError200);
}
