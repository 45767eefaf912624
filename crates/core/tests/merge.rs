//! The three merge steps against local-s3 over HTTP, bytes checked in the
//! buckets: every CSV rule, a 10,000-file run in 10 batches, reruns,
//! single output, source deletion, and the errors a user can cause.

use futures::{StreamExt, stream};
use local_s3::FaultKind;
use s3mm_core::client::ClientSettings;
use s3mm_core::direct::Direct;
use s3mm_core::merge::{
    AggregateSummary, BatchItem, GenerateOutput, MergeRequest, MergeTask, Report, aggregate, generate_batches,
    merge_batch,
};
use s3mm_test_support::{S3Fixture, fast_retries};
use serde_json::json;

async fn fixture() -> S3Fixture {
    S3Fixture::start(&["b-in", "b-out"]).await
}

fn input(batch_size: usize, run_id: &str) -> serde_json::Value {
    json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out", "dest_prefix": "merged-csvs/",
           "batch_size": batch_size, "run_id": run_id})
}

struct Run {
    generated: GenerateOutput,
    summary: AggregateSummary,
    report: Report,
}

async fn items(f: &S3Fixture, generated: &GenerateOutput) -> Vec<BatchItem> {
    let body = f.server.object("b-out", &generated.batches_key).expect("batches.json").data;
    serde_json::from_slice(&body).expect("items")
}

async fn run(f: &S3Fixture, input: serde_json::Value) -> Run {
    let request = MergeRequest::from_input(&input, 1000, "fallback").expect("valid input");
    let generated = generate_batches(&f.client, &request, 8).await.expect("generated");
    let tasks: Vec<MergeTask> = items(f, &generated).await.into_iter().map(|b| generated.merge_task(b)).collect();
    let direct = Direct::new(&f.client);
    let merged: Vec<_> =
        stream::iter(&tasks).map(|t| merge_batch(&f.client, &direct, t, 16)).buffer_unordered(10).collect().await;
    for result in merged {
        result.expect("batch merged");
    }
    let summary = aggregate(&f.client, &generated.aggregate_task()).await.expect("aggregated");
    let report: Report = serde_json::from_slice(&f.server.object("b-out", &summary.report_key).expect("report").data)
        .expect("report json");
    Run { generated, summary, report }
}

fn output(f: &S3Fixture, run: &Run, batch: u64) -> String {
    let key = format!("{}merged-{batch:05}.csv", run.generated.run_prefix);
    String::from_utf8_lossy(&f.server.object("b-out", &key).expect("output").data).into_owned()
}

async fn merge_files(files: &[(&str, &[u8])]) -> (S3Fixture, Run, String) {
    let f = fixture().await;
    for (name, body) in files {
        f.server.put_object("b-in", &format!("csvs/{name}"), body).expect("put");
    }
    let run = run(&f, input(1000, "r1")).await;
    let out = output(&f, &run, 0);
    (f, run, out)
}

#[tokio::test]
async fn bom_on_some_files_is_dropped() {
    let (_, run, out) = merge_files(&[
        ("a.csv", b"\xEF\xBB\xBFid,v\n1,a\n"),
        ("b.csv", b"id,v\n2,b\n"),
        ("c.csv", b"\xEF\xBB\xBFid,v\n3,c\n"),
    ])
    .await;
    assert_eq!(out, "id,v\n1,a\n2,b\n3,c\n");
    assert_eq!(run.report.merged_files, 3);
    assert_eq!(run.report.skipped_files, 0);
}

#[tokio::test]
async fn crlf_and_lf_mixed() {
    let (_, _, out) =
        merge_files(&[("a.csv", b"id,v\r\n1,a\r\n"), ("b.csv", b"id,v\n2,b\n"), ("c.csv", b"id,v\r\n3,c\r\n")]).await;
    assert_eq!(out, "id,v\r\n1,a\r\n2,b\r\n3,c\r\n");
}

#[tokio::test]
async fn quoted_comma_quote_and_newline_pass_through() {
    let row = "1,\"Smith, \"\"J\"\"\",\"line one\nline two\"\n";
    let file = format!("id,name,note\n{row}");
    let (_, run, out) = merge_files(&[("a.csv", file.as_bytes()), ("b.csv", b"id,name,note\n2,x,y\n")]).await;
    assert_eq!(out, format!("id,name,note\n{row}2,x,y\n"));
    assert_eq!(run.report.rows, 2);
    assert_eq!(run.report.odd_rows, 0);
}

#[tokio::test]
async fn missing_final_newline_is_added() {
    let (_, _, out) = merge_files(&[("a.csv", b"id,v\n1,a"), ("b.csv", b"id,v\n2,b")]).await;
    assert_eq!(out, "id,v\n1,a\n2,b\n");
}

#[tokio::test]
async fn empty_file_adds_no_row() {
    let (_, run, out) = merge_files(&[("a.csv", b""), ("b.csv", b"id,v\n2,b\n")]).await;
    assert_eq!(out, "id,v\n2,b\n");
    assert_eq!(run.report.empty_files, 1);
    assert_eq!(run.report.total_files, 2);
}

#[tokio::test]
async fn header_only_file_adds_no_row() {
    let (_, run, out) = merge_files(&[("a.csv", b"id,v\n"), ("b.csv", b"id,v\n2,b\n")]).await;
    assert_eq!(out, "id,v\n2,b\n");
    assert_eq!(run.report.header_only_files, 1);
    assert_eq!(run.report.rows, 1);
}

#[tokio::test]
async fn a_different_header_is_skipped_and_reported() {
    let (_, run, out) =
        merge_files(&[("a.csv", b"id,v\n1,a\n"), ("b.csv", b"id,other\n9,z\n"), ("c.csv", b"id,v\n3,c\n")]).await;
    assert_eq!(out, "id,v\n1,a\n3,c\n");
    assert_eq!(run.report.skipped_files, 1);
    assert_eq!(run.report.skipped[0].key, "csvs/b.csv");
    assert!(run.report.skipped[0].reason.contains("id,other"), "{}", run.report.skipped[0].reason);
    assert_eq!(run.summary.skipped_files, 1);
}

#[tokio::test]
async fn a_row_with_another_field_count_is_kept_and_counted() {
    let (_, run, out) = merge_files(&[("a.csv", b"id,v\n1,a,extra\n"), ("b.csv", b"id,v\n2,b\n")]).await;
    assert_eq!(out, "id,v\n1,a,extra\n2,b\n");
    assert_eq!(run.report.odd_rows, 1);
    assert_eq!(run.report.rows, 2);
}

#[tokio::test]
async fn the_first_files_header_rules_every_batch() {
    let f = fixture().await;
    f.server.put_object("b-in", "csvs/0.csv", b"id,v\n0,a\n").expect("put");
    f.server.put_object("b-in", "csvs/1.csv", b"other,h\n1,b\n").expect("put");
    f.server.put_object("b-in", "csvs/2.csv", b"id,v\n2,c\n").expect("put");
    let run = run(&f, input(1, "per-batch")).await;
    assert_eq!(output(&f, &run, 1), "id,v\n", "batch 1's only file has another header: skipped");
    assert_eq!(output(&f, &run, 2), "id,v\n2,c\n");
    assert_eq!(run.report.skipped_files, 1);
}

#[tokio::test]
async fn ten_thousand_files_in_ten_batches() {
    let f = fixture().await;
    let names: Vec<String> = (0..10_000).map(|i| format!("csvs/part {i:05} ü.csv")).collect();
    for (i, name) in names.iter().enumerate() {
        f.server.put_object("b-in", name, format!("id,name,amount\n{i},name {i},{}\n", i * 7).as_bytes()).expect("put");
    }
    f.server.put_object("b-in", "csvs/readme.txt", b"not a csv").expect("put");
    f.server.put_object("b-in", "csvs/data.json", b"{}").expect("put");
    let mut single = input(1000, "big");
    single["single_output"] = json!(true);
    let run = run(&f, single).await;
    assert_eq!(run.generated.total_files, 10_000, "non-CSV objects are not sources");
    assert_eq!(run.generated.total_batches, 10);
    assert_eq!(run.summary.rows, 10_000);
    assert_eq!(run.summary.failed_batches, 0);
    assert_eq!(run.summary.outputs, 10);

    let mut seen = vec![false; 10_000];
    let mut concatenated = String::from("id,name,amount\n");
    for batch in 0..10 {
        let out = output(&f, &run, batch);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("id,name,amount"));
        let ids: Vec<usize> = lines.map(|l| l.split(',').next().and_then(|v| v.parse().ok()).expect("id")).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "key order within output {batch}");
        for id in ids {
            assert!(!seen[id], "row {id} twice");
            seen[id] = true;
        }
        concatenated.push_str(out.split_once('\n').expect("header").1);
    }
    assert!(seen.iter().all(|s| *s), "every row once");
    let merged = f.server.object("b-out", &run.summary.merged_key.clone().expect("merged.csv")).expect("merged").data;
    assert_eq!(String::from_utf8_lossy(&merged), concatenated, "single output is the concatenation");

    // A rerun of one batch writes the same bytes.
    let first = f.server.object("b-out", &format!("{}merged-00003.csv", run.generated.run_prefix)).expect("out").data;
    let item = items(&f, &run.generated).await.remove(3);
    let task = MergeTask {
        run_id: run.generated.run_id.clone(),
        source_bucket: "b-in".into(),
        dest_bucket: "b-out".into(),
        run_prefix: run.generated.run_prefix.clone(),
        batch: item,
    };
    merge_batch(&f.client, &Direct::new(&f.client), &task, 64).await.expect("rerun");
    let again = f.server.object("b-out", &format!("{}merged-00003.csv", run.generated.run_prefix)).expect("out").data;
    assert_eq!(first, again);
}

#[tokio::test]
async fn listing_spans_pages_and_skips_the_runs_own_outputs() {
    let f = fixture().await;
    for i in 0..2_500 {
        f.server.put_object("b-out", &format!("data/{i:04}.csv"), format!("h\n{i}\n").as_bytes()).expect("put");
    }
    // Outputs of an earlier run live under the source prefix, same bucket.
    f.server.put_object("b-out", "data/merged/old-run/merged-00000.csv", b"h\nold\n").expect("put");
    let input = json!({"source_bucket": "b-out", "source_prefix": "data", "dest_bucket": "b-out",
                       "dest_prefix": "data/merged", "batch_size": 700, "run_id": "again"});
    let run = run(&f, input).await;
    assert_eq!(run.generated.total_files, 2_500);
    assert_eq!(run.generated.total_batches, 4);
    assert_eq!(run.summary.rows, 2_500);
    assert!(f.server.counters().get("ListObjectsV2").copied().unwrap_or(0) >= 3);
}

#[tokio::test]
async fn delete_sources_removes_exactly_the_merged_files_after_the_report() {
    let f = fixture().await;
    f.server.put_object("b-in", "csvs/a.csv", b"id\n1\n").expect("put");
    f.server.put_object("b-in", "csvs/b.csv", b"other\n2\n").expect("put");
    f.server.put_object("b-in", "csvs/c.csv", b"").expect("put");
    let mut with_delete = input(2, "del");
    with_delete["delete_sources"] = json!(true);
    let run = run(&f, with_delete).await;
    assert_eq!(run.summary.deleted_sources, 2);
    assert_eq!(f.server.keys("b-in"), vec!["csvs/b.csv".to_owned()], "the skipped file stays");
    assert_eq!(run.report.deleted_sources, 2);
}

#[tokio::test]
async fn large_outputs_go_out_as_multipart_uploads() {
    let f = fixture().await;
    let row = format!("{}\n", "x".repeat(1024 * 1024 - 1));
    for i in 0..10 {
        f.server.put_object("b-in", &format!("csvs/{i}.csv"), format!("h\n{row}").as_bytes()).expect("put");
    }
    let run = run(&f, input(1000, "mp")).await;
    let out = f.server.object("b-out", &format!("{}merged-00000.csv", run.generated.run_prefix)).expect("out");
    assert_eq!(out.data.len(), 2 + 10 * row.len());
    assert!(out.etag.contains('-'), "multipart ETag: {}", out.etag);
    assert!(f.server.counters().get("UploadPart").copied().unwrap_or(0) >= 2);
}

#[tokio::test]
async fn invalid_input_names_the_field() {
    let cases = [
        (json!({"source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": ""}), "source_bucket"),
        (
            json!({"source_bucket": "b-in", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": "", "batch_size": 0}),
            "batch_size",
        ),
        (
            json!({"source_bucket": "b-in", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": "", "batch_size": 1_000_000_000u64}),
            "batch_size",
        ),
        (
            json!({"source_bucket": "b-in", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": "", "batch_size": "10"}),
            "batch_size",
        ),
        (
            json!({"source_bucket": "B_IN", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": ""}),
            "source_bucket",
        ),
        (
            json!({"source_bucket": "b-in", "source_prefix": 5, "dest_bucket": "b-out", "dest_prefix": ""}),
            "source_prefix",
        ),
        (
            json!({"source_bucket": "b-in", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": "", "single_output": "yes"}),
            "single_output",
        ),
        (
            json!({"source_bucket": "b-in", "source_prefix": "a/", "dest_bucket": "b-out", "dest_prefix": "", "run_id": "a/b"}),
            "run_id",
        ),
        (json!([1]), "(input)"),
    ];
    for (input, field) in cases {
        let err = MergeRequest::from_input(&input, 1000, "x").expect_err("invalid");
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains(&format!("`{field}`")), "{err} should name {field}");
    }
    let ok = MergeRequest::from_input(
        &json!({"source_bucket": "b-in", "source_prefix": "a", "dest_bucket": "b-out",
        "dest_prefix": "out", "execution_name": "exec-1"}),
        250,
        "x",
    )
    .expect("valid");
    assert_eq!((ok.run_id.as_str(), ok.batch_size, ok.run_prefix().as_str()), ("exec-1", 250, "out/exec-1/"));
}

#[tokio::test]
async fn an_empty_prefix_names_bucket_and_prefix() {
    let f = fixture().await;
    let request = MergeRequest::from_input(&input(10, "e"), 1000, "x").expect("valid");
    let err = generate_batches(&f.client, &request, 8).await.expect_err("nothing to merge");
    assert_eq!(err.error_type(), "EmptyPrefix");
    assert!(err.to_string().contains("s3://b-in/csvs/"), "{err}");
    let missing = MergeRequest::from_input(
        &json!({"source_bucket": "no-such-bucket", "source_prefix": "p/",
        "dest_bucket": "b-out", "dest_prefix": ""}),
        10,
        "x",
    )
    .expect("valid");
    let err = generate_batches(&f.client, &missing, 8).await.expect_err("missing bucket");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test]
async fn a_transient_failure_surfaces_as_retryable_and_a_retry_heals() {
    let f = S3Fixture::start_with(&["b-in", "b-out"], &ClientSettings { max_attempts: 1, ..fast_retries() }).await;
    for i in 0..20 {
        f.server.put_object("b-in", &format!("csvs/{i:02}.csv"), format!("h\n{i}\n").as_bytes()).expect("put");
    }
    let request = MergeRequest::from_input(&input(20, "t"), 1000, "x").expect("valid");
    let generated = generate_batches(&f.client, &request, 8).await.expect("generated");
    let task = MergeTask {
        run_id: "t".into(),
        source_bucket: "b-in".into(),
        dest_bucket: "b-out".into(),
        run_prefix: generated.run_prefix.clone(),
        batch: items(&f, &generated).await.remove(0),
    };
    // One file's direct GET and the SDK's, to which the direct path hands
    // a 503; one GET at a time, so those are the 5th and 6th to arrive.
    f.server.faults().fail_nth("GetObject", 5, FaultKind::SlowDown);
    f.server.faults().fail_nth("GetObject", 6, FaultKind::SlowDown);
    let direct = Direct::new(&f.client);
    let err = merge_batch(&f.client, &direct, &task, 1).await.expect_err("throttled");
    assert_eq!(err.error_type(), "TransientS3Error");
    assert!(f.server.object("b-out", &task.batch.output_key).is_none(), "no partial output");
    let summary = merge_batch(&f.client, &direct, &task, 4).await.expect("the retry succeeds");
    assert_eq!(summary.rows, 20);
}
