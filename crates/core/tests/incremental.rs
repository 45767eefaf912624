//! Incremental runs against local-s3: across runs, every uploaded row is in
//! exactly one output, whatever the key order and whenever it was uploaded;
//! a failed run is made good by the next; a second run at once is refused.
//!
//! A run's window ends at a whole second (S3 reports LastModified in
//! seconds), so these tests wait for the clock to pass the second of their
//! last upload before a run that must see it: the behaviour under test is
//! defined by the clock.

use futures::{StreamExt, stream};
use s3mm_core::direct::Direct;
use s3mm_core::merge::{
    BatchItem, GenerateOutput, MergeError, MergeRequest, MergeTask, Report, StreamState, aggregate, generate_batches,
    merge_batch, state_key,
};
use s3mm_test_support::S3Fixture;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn input(run_id: &str) -> Value {
    json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out", "dest_prefix": "out/",
           "batch_size": 100, "run_id": run_id, "incremental": true, "settle_seconds": 0})
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Waits until the clock is in a later second than now: what was uploaded
/// before this call is then inside the next run's window.
async fn next_second() {
    let second = now_ms() / 1000;
    while now_ms() / 1000 == second {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn upload(f: &S3Fixture, names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .map(|name| {
            let row = format!("{name},{}", name.len());
            f.server.put_object("b-in", &format!("csvs/{name}.csv"), format!("id,n\n{row}\n").as_bytes()).expect("put");
            row
        })
        .collect()
}

async fn generate(f: &S3Fixture, input: &Value) -> Result<GenerateOutput, MergeError> {
    let request = MergeRequest::from_input(input, 1000, "fallback").expect("valid input");
    generate_batches(&f.client, &request, 8).await
}

fn items(f: &S3Fixture, generated: &GenerateOutput) -> Vec<BatchItem> {
    serde_json::from_slice(&f.server.object("b-out", &generated.batches_key).expect("batches.json").data)
        .expect("items")
}

async fn merge_all(f: &S3Fixture, generated: &GenerateOutput) {
    let tasks: Vec<MergeTask> = items(f, generated).into_iter().map(|b| generated.merge_task(b)).collect();
    // A batch whose manifest is gone fails, as a crashed merger's would.
    let direct = Direct::new(&f.client);
    let merge = |t| merge_batch(&f.client, &direct, t, 8);
    let _: Vec<_> = stream::iter(&tasks).map(merge).buffer_unordered(4).collect().await;
}

async fn finish(f: &S3Fixture, generated: &GenerateOutput) -> Report {
    let summary = aggregate(&f.client, &generated.aggregate_task()).await.expect("aggregated");
    serde_json::from_slice(&f.server.object("b-out", &summary.report_key).expect("report").data).expect("report json")
}

async fn run(f: &S3Fixture, run_id: &str) -> Report {
    let generated = generate(f, &input(run_id)).await.expect("generated");
    merge_all(f, &generated).await;
    finish(f, &generated).await
}

/// Every data row in every output now in the destination, counted.
fn rows_in_outputs(f: &S3Fixture) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for key in f.server.keys("b-out") {
        if key.contains("/merged-") && key.ends_with(".csv") {
            let body = String::from_utf8(f.server.object("b-out", &key).expect("output").data.to_vec()).expect("utf-8");
            for row in body.lines().skip(1) {
                *rows.entry(row.to_owned()).or_default() += 1;
            }
        }
    }
    rows
}

fn assert_each_once(f: &S3Fixture, uploaded: &[String]) {
    let rows = rows_in_outputs(f);
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows in more than one output: {twice:?}");
    let missing: Vec<_> = uploaded.iter().filter(|r| !rows.contains_key(*r)).collect();
    assert!(missing.is_empty(), "{} rows in no output, e.g. {:?}", missing.len(), missing.first());
    assert_eq!(rows.len(), uploaded.len(), "no row that was not uploaded");
}

fn state(f: &S3Fixture) -> StreamState {
    let key = state_key("out/", "b-in", "csvs/");
    serde_json::from_slice(&f.server.object("b-out", &key).expect("state").data).expect("state json")
}

#[tokio::test]
async fn three_runs_with_uploads_between_and_during_merge_each_row_once() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let mut uploaded = upload(&f, (0..250).map(|i| format!("m{i:04}")));
    next_second().await;
    let first = run(&f, "run-1").await;
    assert_eq!((first.total_files, first.outputs.len()), (250, 3));

    uploaded.extend(upload(&f, (0..120).map(|i| format!("z{i:04}"))));
    next_second().await;
    let second = generate(&f, &input("run-2")).await.expect("generated");
    // Uploaded while run 2 merges, with keys that sort before everything
    // merged so far.
    uploaded.extend(upload(&f, (0..80).map(|i| format!("a{i:04}"))));
    merge_all(&f, &second).await;
    let second = finish(&f, &second).await;
    assert_eq!(second.total_files, 120, "only the files uploaded since run 1");
    let record = second.incremental.as_ref().expect("incremental record");
    assert!(record.advanced);
    assert_eq!(record.earlier_files, 250);

    next_second().await;
    let third = run(&f, "run-3").await;
    assert_eq!(third.total_files, 80, "the files uploaded during run 2");

    let fourth = run(&f, "run-4").await;
    assert_eq!((fourth.total_files, fourth.outputs.len(), fourth.failed_batches.len()), (0, 0, 0));
    assert!(fourth.incremental.as_ref().is_some_and(|r| r.advanced));
    assert_each_once(&f, &uploaded);
    let state = state(&f);
    assert_eq!((state.last_run.as_deref(), state.running.is_none()), (Some("run-4"), true));
}

#[tokio::test]
async fn files_younger_than_the_settle_time_wait_for_a_later_run() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let uploaded = upload(&f, (0..30).map(|i| format!("f{i:03}")));
    next_second().await;
    let mut patient = input("settling");
    patient["settle_seconds"] = json!(3_600);
    let generated = generate(&f, &patient).await.expect("generated");
    merge_all(&f, &generated).await;
    let settling = finish(&f, &generated).await;
    assert_eq!(settling.total_files, 0);
    assert_eq!(settling.incremental.as_ref().map(|r| r.deferred_files), Some(30));
    let done = run(&f, "settled").await;
    assert_eq!(done.total_files, 30);
    assert_each_once(&f, &uploaded);
}

#[tokio::test]
async fn a_failed_run_is_made_good_by_the_next() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let uploaded = upload(&f, (0..300).map(|i| format!("k{i:04}")));
    next_second().await;
    let generated = generate(&f, &input("fails")).await.expect("generated");
    let lost = items(&f, &generated)[1].manifest_key.clone();
    // Batch 1's manifest disappears: that batch fails, the others merge.
    f.client.delete_object().bucket("b-out").key(&lost).send().await.expect("deleted");
    merge_all(&f, &generated).await;
    let failed = finish(&f, &generated).await;
    assert_eq!(failed.failed_batches.len(), 1);
    let record = failed.incremental.as_ref().expect("incremental record");
    assert!(!record.advanced);
    assert_eq!(record.removed_outputs, 2, "the outputs of the batches that did merge");
    assert!(rows_in_outputs(&f).is_empty(), "nothing of the failed run stays");
    assert_eq!(state(&f).merged_before_ms, 0, "the watermark did not move");

    let good = run(&f, "good").await;
    assert_eq!((good.total_files, good.failed_batches.len()), (300, 0));
    assert_each_once(&f, &uploaded);
}

#[tokio::test]
async fn a_second_run_at_once_is_refused_naming_the_first() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let mut uploaded = upload(&f, (0..50).map(|i| format!("c{i:03}")));
    next_second().await;
    let first = generate(&f, &input("first")).await.expect("first takes the lock");
    let err = generate(&f, &input("second")).await.expect_err("refused");
    assert_eq!(err.error_type(), "RunInProgress");
    let message = err.to_string();
    assert!(
        message.starts_with("incremental run first of this stream is still running (started ")
            && message.contains("lock s3://b-out/out/_incremental/b-in/csvs/state.json held until ")
            && message.ends_with("start this one with \"takeover\": \"first\""),
        "{message}"
    );
    merge_all(&f, &first).await;
    finish(&f, &first).await;
    let again = generate(&f, &input("first")).await.expect_err("a run id is used once");
    assert!(matches!(again, MergeError::InvalidInput { field: "run_id", .. }), "{again}");

    // A run that never reached its aggregator: the next may take over,
    // and the abandoned run's outputs go.
    uploaded.extend(upload(&f, (0..40).map(|i| format!("d{i:03}"))));
    next_second().await;
    let abandoned = generate(&f, &input("abandoned")).await.expect("generated");
    merge_all(&f, &abandoned).await;
    assert!(!rows_in_outputs(&f).is_empty());
    let mut takeover = input("takeover");
    takeover["takeover"] = json!("abandoned");
    let generated = generate(&f, &takeover).await.expect("takes over");
    merge_all(&f, &generated).await;
    let report = finish(&f, &generated).await;
    let record = report.incremental.as_ref().expect("incremental record");
    assert_eq!((record.abandoned_run.as_deref(), record.removed_outputs), (Some("abandoned"), 1));
    assert_eq!(report.total_files, 40);
    assert_each_once(&f, &uploaded);
}
