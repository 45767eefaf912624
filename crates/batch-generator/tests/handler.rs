//! The batch-generator handler in-process against local-s3.

use s3mm_core::MergeConfig;
use s3mm_test_support::S3Fixture;
use serde_json::json;

async fn setup() -> S3Fixture {
    S3Fixture::start(&["b-in", "b-out"]).await
}

#[tokio::test]
async fn output_holds_counts_and_one_key_never_key_lists() {
    let f = setup().await;
    let (server, client) = (&f.server, &f.client);
    for i in 0..2_345 {
        server.put_object("b-in", &format!("csvs/{i:05}.csv"), b"h\n1\n").expect("put");
    }
    let input = json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out",
                       "dest_prefix": "merged-csvs/", "execution_name": "exec-42"});
    let output = batch_generator::handle(client, &input, &MergeConfig::default(), "req").await.expect("generated");
    assert_eq!(output.run_id, "exec-42");
    assert_eq!((output.total_files, output.total_batches), (2_345, 3));
    assert_eq!(output.batches_key, "merged-csvs/exec-42/_manifests/batches.json");
    assert_eq!(output.map_results_prefix, "merged-csvs/exec-42/_map");
    let json = serde_json::to_string(&output).expect("json");
    assert!(json.len() < 1024, "output does not grow with files: {json}");
    let items: serde_json::Value =
        serde_json::from_slice(&server.object("b-out", &output.batches_key).expect("batches.json").data).expect("json");
    assert_eq!(
        items[2],
        json!({"batch_id": 2, "manifest_key": "merged-csvs/exec-42/_manifests/batch-00002.json",
        "output_key": "merged-csvs/exec-42/merged-00002.csv", "file_count": 345, "source_bytes": 345 * 4})
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &server.object("b-out", "merged-csvs/exec-42/_manifests/batch-00001.json").expect("m").data,
    )
    .expect("json");
    assert_eq!(manifest["source_bucket"], "b-in");
    assert_eq!(manifest["keys"][0], "csvs/01000.csv");
    assert_eq!(manifest["keys"].as_array().map(Vec::len), Some(1000));
}

#[tokio::test]
async fn errors_carry_the_error_type_step_functions_sees() {
    let f = setup().await;
    let client = &f.client;
    let bad = json!({"source_bucket": "b-in", "source_prefix": "csvs/", "dest_bucket": "b-out", "dest_prefix": "",
                     "batch_size": -1});
    let err = batch_generator::handle(client, &bad, &MergeConfig::default(), "req").await.expect_err("invalid");
    let diagnostic = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "InvalidInput");
    assert!(diagnostic.error_message.contains("batch_size"), "{}", diagnostic.error_message);

    let empty =
        json!({"source_bucket": "b-in", "source_prefix": "nothing/", "dest_bucket": "b-out", "dest_prefix": ""});
    let err = batch_generator::handle(client, &empty, &MergeConfig::default(), "req").await.expect_err("empty");
    let diagnostic = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "EmptyPrefix");
    assert!(diagnostic.error_message.contains("s3://b-in/nothing/"), "{}", diagnostic.error_message);
}
