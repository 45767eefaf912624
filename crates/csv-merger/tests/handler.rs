//! The csv-merger handler in-process against local-s3.

use s3mm_core::MergeConfig;
use s3mm_test_support::S3Fixture;
use serde_json::json;

#[tokio::test]
async fn merges_one_map_item_and_reports_bad_input() {
    let f = S3Fixture::start(&["b-in", "b-out"]).await;
    let server = &f.server;
    let handler =
        csv_merger::Handler::new(f.client.clone(), &MergeConfig { fetch_concurrency: 8, ..MergeConfig::default() });
    let keys = ["csvs/b.csv", "csvs/a.csv", "csvs/c d.csv"];
    for (i, key) in keys.iter().enumerate() {
        server.put_object("b-in", key, format!("id,v\n{i},x\n").as_bytes()).expect("put");
    }
    let manifest = json!({"run_id": "r", "batch_id": 7, "source_bucket": "b-in", "header": "id,v\n", "keys": keys});
    server.put_object("b-out", "out/r/_manifests/batch-00007.json", manifest.to_string().as_bytes()).expect("manifest");
    let task = json!({"run_id": "r", "source_bucket": "b-in", "dest_bucket": "b-out", "run_prefix": "out/r/",
        "batch": {"batch_id": 7, "manifest_key": "out/r/_manifests/batch-00007.json",
                  "output_key": "out/r/merged-00007.csv", "file_count": 3}});
    let summary = handler.handle(&task).await.expect("merged");
    assert_eq!((summary.files, summary.rows, summary.skipped), (3, 3, 0));
    let out = server.object("b-out", "out/r/merged-00007.csv").expect("output").data;
    assert_eq!(out.as_ref(), b"id,v\n0,x\n1,x\n2,x\n", "rows in manifest order");
    assert_eq!(summary.bytes, out.len() as u64);
    let value = serde_json::to_value(&summary).expect("json");
    for field in ["batch_id", "output_key", "files", "rows", "bytes", "skipped", "ms"] {
        assert!(value.get(field).is_some(), "{field} in the output");
    }
    assert!(server.object("b-out", "out/r/_results/batch-00007.json").is_some());

    let err = handler.handle(&json!({"run_id": "r"})).await.expect_err("bad input");
    assert_eq!(err.error_type(), "InvalidInput");
    let mut missing = task.clone();
    missing["batch"]["manifest_key"] = json!("out/r/_manifests/nope.json");
    let err = handler.handle(&missing).await.expect_err("no manifest");
    assert_eq!(err.error_type(), "MergeFailed");
    assert!(err.to_string().contains("out/r/_manifests/nope.json"), "{err}");
}
